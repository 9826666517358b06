//! The user-key API (`/v1/kv`, `/v1/txn`, `/v1/cas`): revisions,
//! conditional writes, transactions, range deletes, paged lists and binary
//! values. The JSON shapes are [`meta_client::wire`]'s.
//!
//! - Every answer about keys carries the store's revision
//!   (`X-Meta-Revision`); a key's answer carries its `mod_revision` as its
//!   `ETag`.
//! - `PUT`/`DELETE` honour `If-Match: "<mod_revision>"` (or `*`: exists) and
//!   `If-None-Match: *` (absent) or `"<mod_revision>"`: they become a
//!   transaction whose compares are those preconditions, and a failed one is
//!   `412 precondition_failed` with the key's current `mod_revision`.
//! - Values are bytes: a `PUT` body is the value as is; a `GET` answers the
//!   raw bytes for `Accept: application/octet-stream` or `?raw=true`, else
//!   JSON with `value` (UTF-8) or `value_base64`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meta_client::wire;
use meta_raft::Command;
use meta_raft::model::{self, KvEntry, MAX_TXN_COMPARES, MAX_TXN_OPS, Txn};

use crate::auth::Principal;
use crate::http::{
    ApiError, ApiResult, ApiState, JsonBody, ReadQuery, check_value_len, next_cursor, propose,
    read_barrier, require_kv,
};

/// A key as answered.
fn key_value(reader: &meta_raft::MetadataReader, key: &[u8], e: KvEntry) -> wire::KeyValue {
    wire::KeyValue {
        key: String::from_utf8_lossy(key).into_owned(),
        lease: reader.key_lease(key),
        value: wire::WireValue::from_bytes(&e.value),
        create_revision: e.create_revision,
        mod_revision: e.mod_revision,
        version: e.version,
    }
}

/// `"<revision>"`, an entity tag.
fn etag(revision: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).expect("digits and quotes")
}

/// Adds `X-Meta-Revision` (and an `ETag`) to an answer.
fn with_revision(mut response: Response, revision: u64, tag: Option<u64>) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static(wire::REVISION_HEADER),
        HeaderValue::from(revision),
    );
    if let Some(tag) = tag {
        headers.insert(header::ETAG, etag(tag));
    }
    response
}

/// Whether the client asked for the raw value.
fn wants_raw(headers: &HeaderMap, raw: bool) -> bool {
    raw || headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/octet-stream"))
}

/// One entity tag of a precondition header: `*` or `"<mod_revision>"`.
enum Tag {
    Any,
    Revision(u64),
}

fn tag(headers: &HeaderMap, name: HeaderName) -> ApiResult<Option<Tag>> {
    let mut values = headers.get_all(&name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "`{name}` takes `*` or one entity tag `\"<mod_revision>\"` (as the `ETag` of a read)"
        ))
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let text = value.to_str().map_err(|_| bad())?.trim();
    if text == "*" {
        return Ok(Some(Tag::Any));
    }
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<u64>().ok())
        .map(|r| Some(Tag::Revision(r)))
        .ok_or_else(bad)
}

/// The compares that `If-Match` / `If-None-Match` ask of `key`.
fn preconditions(headers: &HeaderMap, key: &[u8]) -> ApiResult<Vec<model::Compare>> {
    let compare = |target, op| model::Compare {
        key: key.to_vec(),
        target,
        op,
    };
    let exists = |want| compare(model::CompareTarget::Exists(want), model::CompareOp::Equal);
    let mut compares = Vec::new();
    match tag(headers, header::IF_MATCH)? {
        None => {}
        Some(Tag::Any) => compares.push(exists(true)),
        Some(Tag::Revision(r)) => {
            compares.push(exists(true));
            compares.push(compare(
                model::CompareTarget::ModRevision(r),
                model::CompareOp::Equal,
            ));
        }
    }
    match tag(headers, header::IF_NONE_MATCH)? {
        None => {}
        Some(Tag::Any) => compares.push(exists(false)),
        Some(Tag::Revision(r)) => compares.push(compare(
            model::CompareTarget::ModRevision(r),
            model::CompareOp::NotEqual,
        )),
    }
    Ok(compares)
}

/// Proposes a transaction and returns what it did.
async fn propose_txn(
    state: &ApiState,
    uri: &OriginalUri,
    txn: Txn,
) -> ApiResult<model::TxnResponse> {
    match propose(state, uri, Command::Txn(txn)).await? {
        meta_raft::Response::Txn(done) => Ok(done),
        other => Err(ApiError::internal(format!(
            "a transaction was answered {other:?}"
        ))),
    }
}

/// A write under preconditions: `op` if they hold, else `412` with the
/// key's current `mod_revision`. Returns what the op did.
async fn conditional(
    state: &ApiState,
    uri: &OriginalUri,
    key: &[u8],
    compares: Vec<model::Compare>,
    op: model::TxnOp,
) -> ApiResult<model::TxnResponse> {
    let txn = Txn {
        compares,
        success: vec![op],
        failure: vec![model::TxnOp::Get { key: key.to_vec() }],
    };
    let done = propose_txn(state, uri, txn).await?;
    if done.succeeded {
        return Ok(done);
    }
    let current = match done.results.first() {
        Some(model::TxnOpResult::Get(e)) => e.as_ref().map_or(0, |e| e.mod_revision),
        _ => 0,
    };
    Err(precondition_failed(
        format!(
            "the precondition on `{}` does not hold: its mod_revision is {current} \
             (0: absent)",
            String::from_utf8_lossy(key)
        ),
        done.revision,
        current,
    ))
}

fn precondition_failed(message: String, revision: u64, mod_revision: u64) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        message,
    )
    .with("mod_revision", mod_revision)
    .at_revision(revision)
}

/// `GET /v1/kv/{key}`.
pub(crate) async fn get(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Path(key): Path<String>,
    Query(q): Query<ReadQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    require_kv(&principal, false, &key)?;
    read_barrier(&state, &uri, q.stale).await?;
    let (entry, revision) = state.reader.entry_at(key.as_bytes());
    let Some(entry) = entry else {
        return Err(ApiError::not_found(format!("no key `{key}`")).at_revision(revision));
    };
    let mod_revision = entry.mod_revision;
    if let Ok(Some(Tag::Revision(r))) = tag(&headers, header::IF_NONE_MATCH)
        && r == mod_revision
    {
        return Ok(with_revision(
            StatusCode::NOT_MODIFIED.into_response(),
            revision,
            Some(mod_revision),
        ));
    }
    let response = if wants_raw(&headers, q.raw) {
        (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            entry.value,
        )
            .into_response()
    } else {
        Json(wire::GetResponse {
            kv: key_value(&state.reader, key.as_bytes(), entry),
            revision,
        })
        .into_response()
    };
    Ok(with_revision(response, revision, Some(mod_revision)))
}

/// `GET /v1/kv?prefix=`: one page.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Response> {
    let prefix = q.prefix.clone().unwrap_or_default();
    require_kv(&principal, false, &prefix).map_err(|_| {
        ApiError::permission_denied(format!(
            "this key may not list under `{prefix}`: a prefix-scoped key lists with \
             ?prefix= at or under its own prefix"
        ))
    })?;
    let limits = q.page(&state)?;
    read_barrier(&state, &uri, q.stale).await?;
    let (page, revision) = state.reader.list_page(
        prefix.as_bytes(),
        q.start_after.as_deref().map(str::as_bytes),
        limits,
    );
    let next = next_cursor(&page, |(k, _)| String::from_utf8_lossy(k).into_owned());
    let answer = wire::ListResponse {
        items: page
            .items
            .into_iter()
            .map(|(k, e)| key_value(&state.reader, &k, e))
            .collect(),
        next,
        revision,
    };
    Ok(with_revision(Json(answer).into_response(), revision, None))
}

fn written(revision: u64, deleted: Option<u64>, tag: Option<u64>) -> Response {
    let answer = wire::WriteResponse {
        ok: true,
        revision,
        deleted,
    };
    with_revision(Json(answer).into_response(), revision, tag)
}

/// The query of `PUT /v1/kv/{key}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutQuery {
    /// Bind the key to this lease (it is deleted when the lease ends).
    lease: Option<u64>,
}

/// A transaction's put, bound to `lease` if there is one.
fn put_op(key: Vec<u8>, value: Vec<u8>, lease: Option<u64>) -> model::TxnOp {
    match lease {
        Some(lease) => model::TxnOp::PutLeased { key, value, lease },
        None => model::TxnOp::Put { key, value },
    }
}

/// `PUT /v1/kv/{key}`: the body is the value (`?lease=ID` binds the key
/// to a lease).
pub(crate) async fn put(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Path(key): Path<String>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    require_kv(&principal, true, &key)?;
    if let Some(lease) = q.lease {
        crate::http::leases::owned_lease(&state, &principal, lease)?;
    }
    let compares = preconditions(&headers, key.as_bytes())?;
    let value = body?;
    check_value_len(&state, "the value", value.len())?;
    let (key, value) = (key.into_bytes(), value.to_vec());
    let revision = if compares.is_empty() {
        let command = match q.lease {
            Some(lease) => Command::PutLeased { key, value, lease },
            None => Command::Put { key, value },
        };
        match propose(&state, &uri, command).await? {
            meta_raft::Response::Applied { revision } => revision,
            other => return Err(ApiError::internal(format!("a put was answered {other:?}"))),
        }
    } else {
        let op = put_op(key.clone(), value, q.lease);
        conditional(&state, &uri, &key, compares, op)
            .await?
            .revision
    };
    Ok(written(revision, None, Some(revision)))
}

/// `DELETE /v1/kv/{key}`.
pub(crate) async fn delete(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    require_kv(&principal, true, &key)?;
    let key = key.into_bytes();
    let compares = preconditions(&headers, &key)?;
    let op = model::TxnOp::Delete { key: key.clone() };
    let done = conditional(&state, &uri, &key, compares, op).await?;
    Ok(written(done.revision, Some(deleted(&done)), None))
}

fn deleted(done: &model::TxnResponse) -> u64 {
    match done.results.first() {
        Some(model::TxnOpResult::Deleted(n)) => *n,
        _ => 0,
    }
}

/// `DELETE /v1/kv?prefix=P`: every key under a (non-empty) prefix, at one
/// revision.
pub(crate) async fn delete_prefix(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Response> {
    let prefix = q.prefix.clone().unwrap_or_default();
    require_kv(&principal, true, &prefix)?;
    if prefix.is_empty() {
        return Err(ApiError::bad_request(
            "DELETE /v1/kv needs a non-empty ?prefix= (the keys to delete)",
        ));
    }
    let txn = Txn {
        success: vec![model::TxnOp::DeletePrefix {
            prefix: prefix.into_bytes(),
        }],
        ..Txn::default()
    };
    let done = propose_txn(&state, &uri, txn).await?;
    Ok(written(done.revision, Some(deleted(&done)), None))
}

/// `POST /v1/cas`: compare-and-swap by value.
pub(crate) async fn cas(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    body: JsonBody<wire::CasRequest>,
) -> ApiResult<Response> {
    let JsonBody(body) = body;
    require_kv(&principal, true, &body.key)?;
    let (expected, new) = body.values().map_err(ApiError::bad_request)?;
    for (what, value) in [("`expected`", &expected), ("`new`", &new)] {
        check_value_len(&state, what, value.as_ref().map_or(0, Vec::len))?;
    }
    let command = Command::CompareAndSwap {
        key: body.key.into_bytes(),
        expected,
        new,
    };
    match propose(&state, &uri, command).await? {
        meta_raft::Response::Applied { revision } => Ok(written(revision, None, None)),
        other => Err(ApiError::internal(format!("a swap was answered {other:?}"))),
    }
}

/// Checks a transaction's keys against the caller's scopes and turns it
/// into the model's; a malformed one is a `400` saying what is wrong.
fn txn_of(state: &ApiState, principal: &Principal, request: wire::TxnRequest) -> ApiResult<Txn> {
    if request.compare.len() > MAX_TXN_COMPARES {
        return Err(ApiError::bad_request(format!(
            "a transaction has at most {MAX_TXN_COMPARES} compares; this one has {}",
            request.compare.len()
        )));
    }
    let mut compares = Vec::with_capacity(request.compare.len());
    for c in request.compare {
        require_kv(principal, false, &c.key)?;
        let target = match c.target().map_err(ApiError::bad_request)? {
            wire::CompareTarget::Value(v) => model::CompareTarget::Value(v),
            wire::CompareTarget::ModRevision(r) => model::CompareTarget::ModRevision(r),
            wire::CompareTarget::CreateRevision(r) => model::CompareTarget::CreateRevision(r),
            wire::CompareTarget::Version(v) => model::CompareTarget::Version(v),
            wire::CompareTarget::Exists(e) => model::CompareTarget::Exists(e),
        };
        let op = match c.op {
            wire::CompareOp::Equal => model::CompareOp::Equal,
            wire::CompareOp::NotEqual => model::CompareOp::NotEqual,
            wire::CompareOp::Less => model::CompareOp::Less,
            wire::CompareOp::Greater => model::CompareOp::Greater,
        };
        compares.push(model::Compare {
            key: c.key.into_bytes(),
            target,
            op,
        });
    }
    let branch = |name: &str, ops: Vec<wire::TxnOp>| -> ApiResult<Vec<model::TxnOp>> {
        if ops.len() > MAX_TXN_OPS {
            return Err(ApiError::bad_request(format!(
                "a transaction's `{name}` has at most {MAX_TXN_OPS} ops; this one has {}",
                ops.len()
            )));
        }
        ops.into_iter()
            .map(|op| {
                Ok(match op {
                    wire::TxnOp::Put(p) => {
                        require_kv(principal, true, &p.key)?;
                        let value = p.value.require().map_err(|e| {
                            ApiError::bad_request(format!("put of `{}`: {e}", p.key))
                        })?;
                        check_value_len(state, &format!("the value of `{}`", p.key), value.len())?;
                        if let Some(lease) = p.lease {
                            crate::http::leases::owned_lease(state, principal, lease)?;
                        }
                        put_op(p.key.into_bytes(), value, p.lease)
                    }
                    wire::TxnOp::Delete(k) => {
                        require_kv(principal, true, &k.key)?;
                        model::TxnOp::Delete {
                            key: k.key.into_bytes(),
                        }
                    }
                    wire::TxnOp::DeletePrefix(p) => {
                        if p.prefix.is_empty() {
                            return Err(ApiError::bad_request(
                                "`delete_prefix` needs a non-empty prefix",
                            ));
                        }
                        require_kv(principal, true, &p.prefix)?;
                        model::TxnOp::DeletePrefix {
                            prefix: p.prefix.into_bytes(),
                        }
                    }
                    wire::TxnOp::Get(k) => {
                        require_kv(principal, false, &k.key)?;
                        model::TxnOp::Get {
                            key: k.key.into_bytes(),
                        }
                    }
                })
            })
            .collect()
    };
    Ok(Txn {
        compares,
        success: branch("success", request.success)?,
        failure: branch("failure", request.failure)?,
    })
}

/// `POST /v1/txn`.
pub(crate) async fn txn(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    body: JsonBody<wire::TxnRequest>,
) -> ApiResult<Response> {
    let JsonBody(request) = body;
    let txn = txn_of(&state, &principal, request)?;
    // The keys of each branch's gets, to name what they read.
    let gets = |ops: &[model::TxnOp]| -> Vec<Option<Vec<u8>>> {
        ops.iter()
            .map(|op| match op {
                model::TxnOp::Get { key } => Some(key.clone()),
                _ => None,
            })
            .collect()
    };
    let (success, failure) = (gets(&txn.success), gets(&txn.failure));
    let done = if txn.writes() {
        propose_txn(&state, &uri, txn).await?
    } else {
        // Only compares and gets: a linearizable read, no log entry (so a
        // key that may only read cannot make the log grow).
        read_barrier(&state, &uri, false).await?;
        state.reader.read_txn(txn).map_err(crate::http::rejection)?
    };
    let ran = if done.succeeded { success } else { failure };
    let results = ran
        .into_iter()
        .zip(done.results)
        .map(|(key, result)| match result {
            model::TxnOpResult::Get(e) => wire::TxnResult::Get {
                kv: e.map(|e| key_value(&state.reader, key.as_deref().unwrap_or_default(), e)),
            },
            model::TxnOpResult::Deleted(deleted) => wire::TxnResult::Delete { deleted },
            model::TxnOpResult::Put => wire::TxnResult::Put {},
        })
        .collect();
    let answer = wire::TxnResponse {
        succeeded: done.succeeded,
        revision: done.revision,
        results,
    };
    Ok(with_revision(
        Json(answer).into_response(),
        done.revision,
        None,
    ))
}
