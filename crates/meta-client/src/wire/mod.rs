//! The JSON shapes of the HTTP API (`docs/api.md`): what `meta-node`
//! serves and what clients send and read. One definition, used by both.
//!
//! Values are bytes. In JSON a value travels as `value` when it is UTF-8
//! text and as `value_base64` (standard alphabet, with padding) when it is
//! not; requests may use either. Keys are UTF-8 text.

mod admin;
mod watch;

pub use admin::*;
pub use watch::*;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// The header carrying the store's revision on every answer about user
/// keys.
pub const REVISION_HEADER: &str = "x-meta-revision";

/// The header carrying the log index an online backup
/// (`GET /v1/snapshot`) was taken at.
pub const APPLIED_INDEX_HEADER: &str = "x-meta-applied-index";

/// The header carrying the term of that log entry.
pub const APPLIED_TERM_HEADER: &str = "x-meta-applied-term";

/// `GET /v1/auth/whoami`: who the caller's token is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The API key's id.
    pub id: String,
    /// Its scopes, as `apikey create --scope` spells them.
    pub scopes: Vec<String>,
    /// When it expires (Unix ms), if it does.
    pub expires_at_ms: Option<u64>,
}

/// `POST /v1/cluster/leader`: move leadership to another voter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferLeaderRequest {
    /// The voter to lead.
    pub to: u64,
}

/// The answer to a leader transfer: the new leader leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLeaderResponse {
    /// Always true.
    pub ok: bool,
    /// The node that leads now.
    pub leader: u64,
    /// Its term.
    pub term: u64,
}

/// A value in JSON: `value` (UTF-8 text) or `value_base64` (any bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireValue {
    /// The value, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value in base64, when it is not UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

impl WireValue {
    /// `value` for UTF-8 text, else `value_base64`.
    pub fn from_bytes(bytes: &[u8]) -> WireValue {
        match std::str::from_utf8(bytes) {
            Ok(text) => WireValue {
                value: Some(text.to_string()),
                value_base64: None,
            },
            Err(_) => WireValue {
                value: None,
                value_base64: Some(STANDARD.encode(bytes)),
            },
        }
    }

    /// The bytes (`None`: neither field present), or why they cannot be
    /// read (both fields, or bad base64).
    pub fn to_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        match (&self.value, &self.value_base64) {
            (Some(_), Some(_)) => Err("give `value` or `value_base64`, not both".into()),
            (Some(text), None) => Ok(Some(text.clone().into_bytes())),
            (None, Some(b64)) => STANDARD
                .decode(b64)
                .map(Some)
                .map_err(|e| format!("`value_base64` is not base64: {e}")),
            (None, None) => Ok(None),
        }
    }

    /// [`to_bytes`](Self::to_bytes), requiring a value.
    pub fn require(&self) -> Result<Vec<u8>, String> {
        self.to_bytes()?
            .ok_or_else(|| "missing `value` (or `value_base64`)".to_string())
    }
}

/// A user key as answered: its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The lease the key is bound to (it is deleted when the lease ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// The value.
    #[serde(flatten)]
    pub value: WireValue,
    /// The store revision that created the key.
    pub create_revision: u64,
    /// The store revision of its last change (its `ETag`).
    pub mod_revision: u64,
    /// Writes since its creation (1 when created).
    pub version: u64,
}

/// `GET /v1/kv/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetResponse {
    /// The key.
    #[serde(flatten)]
    pub kv: KeyValue,
    /// The store's revision when it was read.
    pub revision: u64,
}

/// `GET /v1/kv?prefix=`: one page of keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    /// The keys, in byte order.
    pub items: Vec<KeyValue>,
    /// The cursor of the next page (pass it as `start_after`), or `None`
    /// after the last page.
    pub next: Option<String>,
    /// The store's revision when the page was read.
    pub revision: u64,
}

/// A write's answer (`PUT`, `DELETE`, `/v1/cas`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResponse {
    /// Always true (failures are errors).
    pub ok: bool,
    /// The store's revision after the write (for a put, the key's new
    /// `mod_revision`).
    pub revision: u64,
    /// Keys deleted (deletes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<u64>,
}

/// `POST /v1/cas`: set (or delete, `new` absent) a key if its value is
/// `expected` (absent: the key must not exist).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasRequest {
    /// The key.
    pub key: String,
    /// The value it must hold now (text); `None` with no
    /// `expected_base64`: it must not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The value it must hold now, in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_base64: Option<String>,
    /// The value it gets (text); `None` with no `new_base64`: deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    /// The value it gets, in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_base64: Option<String>,
}

impl CasRequest {
    /// The expected and new values as bytes.
    #[allow(clippy::type_complexity)]
    pub fn values(&self) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), String> {
        let expected = WireValue {
            value: self.expected.clone(),
            value_base64: self.expected_base64.clone(),
        };
        let new = WireValue {
            value: self.new.clone(),
            value_base64: self.new_base64.clone(),
        };
        Ok((expected.to_bytes()?, new.to_bytes()?))
    }
}

/// A comparison operator in a [`Compare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// Equal.
    #[serde(rename = "=")]
    Equal,
    /// Not equal.
    #[serde(rename = "!=")]
    NotEqual,
    /// The key's side is less.
    #[serde(rename = "<")]
    Less,
    /// The key's side is greater.
    #[serde(rename = ">")]
    Greater,
}

/// One condition of a transaction: exactly one of `value`,
/// `value_base64`, `mod_revision`, `create_revision`, `version`, `exists`
/// says what of `key` is compared, with `op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key.
    pub key: String,
    /// The operator.
    pub op: CompareOp,
    /// Compare the value (text, or `value_base64`).
    #[serde(flatten)]
    pub value: WireValue,
    /// Compare the revision of its last change (0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
    /// Compare the revision that created it (0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_revision: Option<u64>,
    /// Compare its version (0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Compare whether it exists (`=` and `!=` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// What a [`Compare`] looks at, once read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The value.
    Value(Vec<u8>),
    /// The revision of its last change.
    ModRevision(u64),
    /// The revision that created it.
    CreateRevision(u64),
    /// Its version.
    Version(u64),
    /// Whether it exists.
    Exists(bool),
}

impl Compare {
    /// A compare of `key` with `op` on `target`.
    pub fn new(key: impl Into<String>, op: CompareOp, target: CompareTarget) -> Compare {
        let mut compare = Compare {
            key: key.into(),
            op,
            value: WireValue::default(),
            mod_revision: None,
            create_revision: None,
            version: None,
            exists: None,
        };
        match target {
            CompareTarget::Value(v) => compare.value = WireValue::from_bytes(&v),
            CompareTarget::ModRevision(r) => compare.mod_revision = Some(r),
            CompareTarget::CreateRevision(r) => compare.create_revision = Some(r),
            CompareTarget::Version(v) => compare.version = Some(v),
            CompareTarget::Exists(e) => compare.exists = Some(e),
        }
        compare
    }

    /// What is compared, or why the compare is malformed (not exactly one
    /// target, or `<`/`>` on `exists`).
    pub fn target(&self) -> Result<CompareTarget, String> {
        let mut targets = Vec::new();
        if let Some(v) = self.value.to_bytes()? {
            targets.push(CompareTarget::Value(v));
        }
        targets.extend(self.mod_revision.map(CompareTarget::ModRevision));
        targets.extend(self.create_revision.map(CompareTarget::CreateRevision));
        targets.extend(self.version.map(CompareTarget::Version));
        targets.extend(self.exists.map(CompareTarget::Exists));
        if targets.len() != 1 {
            return Err(format!(
                "a compare of `{}` names {} targets; it needs exactly one of value, \
                 value_base64, mod_revision, create_revision, version, exists",
                self.key,
                targets.len()
            ));
        }
        let target = targets.remove(0);
        if matches!(target, CompareTarget::Exists(_))
            && matches!(self.op, CompareOp::Less | CompareOp::Greater)
        {
            return Err(format!(
                "a compare of `{}` on `exists` takes = or != only",
                self.key
            ));
        }
        Ok(target)
    }
}

/// A key to put and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOp {
    /// The key.
    pub key: String,
    /// Bind the key to this lease (it is deleted when the lease ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// The value.
    #[serde(flatten)]
    pub value: WireValue,
}

/// A key named by an op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyOp {
    /// The key.
    pub key: String,
}

/// A prefix named by an op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixOp {
    /// The prefix (not empty).
    pub prefix: String,
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnOp {
    /// Set a key.
    Put(PutOp),
    /// Delete a key.
    Delete(KeyOp),
    /// Delete every key under a prefix.
    DeletePrefix(PrefixOp),
    /// Read a key (as of this point of the branch).
    Get(KeyOp),
}

impl TxnOp {
    /// Puts `value` at `key`.
    pub fn put(key: impl Into<String>, value: &[u8]) -> TxnOp {
        TxnOp::Put(PutOp {
            key: key.into(),
            lease: None,
            value: WireValue::from_bytes(value),
        })
    }

    /// Puts `value` at `key`, bound to `lease`.
    pub fn put_leased(key: impl Into<String>, value: &[u8], lease: u64) -> TxnOp {
        TxnOp::Put(PutOp {
            key: key.into(),
            lease: Some(lease),
            value: WireValue::from_bytes(value),
        })
    }

    /// Deletes `key`.
    pub fn delete(key: impl Into<String>) -> TxnOp {
        TxnOp::Delete(KeyOp { key: key.into() })
    }

    /// Deletes every key under `prefix`.
    pub fn delete_prefix(prefix: impl Into<String>) -> TxnOp {
        TxnOp::DeletePrefix(PrefixOp {
            prefix: prefix.into(),
        })
    }

    /// Reads `key`.
    pub fn get(key: impl Into<String>) -> TxnOp {
        TxnOp::Get(KeyOp { key: key.into() })
    }
}

/// `POST /v1/txn`: if every compare holds, the `success` ops run, else the
/// `failure` ops; atomically, at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    /// The conditions (all must hold).
    #[serde(default)]
    pub compare: Vec<Compare>,
    /// Ops run when every compare holds.
    #[serde(default)]
    pub success: Vec<TxnOp>,
    /// Ops run otherwise.
    #[serde(default)]
    pub failure: Vec<TxnOp>,
}

/// The result of one op of the branch that ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnResult {
    /// The key was set.
    Put {},
    /// Keys deleted by a `delete` or `delete_prefix`.
    Delete {
        /// How many.
        deleted: u64,
    },
    /// A key read (`None`: absent).
    Get {
        /// The key, as read.
        kv: Option<KeyValue>,
    },
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether every compare held (the `success` ops ran).
    pub succeeded: bool,
    /// The store's revision after it (unchanged if it changed nothing).
    pub revision: u64,
    /// One result per op of the branch that ran, in order.
    pub results: Vec<TxnResult>,
}

/// An error answer: `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// What went wrong, with a stable `code` (`docs/api.md` lists them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code (`not_found`, `precondition_failed`, ...).
    pub code: String,
    /// What happened, in words.
    pub message: String,
    /// The store's revision, on `precondition_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The key's current `mod_revision` (0: absent), on
    /// `precondition_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
    /// The leader, on `not_leader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<Box<LeaderHint>>,
    /// The oldest revision a watch can start from, on `compacted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_revision: Option<u64>,
}

impl ErrorBody {
    /// An error with only a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: code.into(),
            message: message.into(),
            revision: None,
            mod_revision: None,
            leader: None,
            oldest_revision: None,
        }
    }
}

/// Where the leader is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    /// Its node id.
    pub id: u64,
    /// Its client API address.
    pub api: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_travel_as_text_or_base64_and_come_back_as_the_same_bytes() {
        for bytes in [
            &b"plain text"[..],
            b"",
            b"\xff\x00\x01binary",
            "é".as_bytes(),
        ] {
            let wire = WireValue::from_bytes(bytes);
            assert_eq!(wire.value.is_some(), std::str::from_utf8(bytes).is_ok());
            assert_eq!(wire.require().unwrap(), bytes);
            let json = serde_json::to_string(&wire).unwrap();
            let back: WireValue = serde_json::from_str(&json).unwrap();
            assert_eq!(back.require().unwrap(), bytes, "{json}");
        }
        let both = WireValue {
            value: Some("a".into()),
            value_base64: Some("YQ==".into()),
        };
        assert!(both.to_bytes().unwrap_err().contains("not both"));
        let bad = WireValue {
            value: None,
            value_base64: Some("***".into()),
        };
        assert!(bad.to_bytes().unwrap_err().contains("not base64"));
    }

    #[test]
    fn a_compare_names_exactly_one_target() {
        let json = r#"{"key":"lock","op":"=","exists":false}"#;
        let c: Compare = serde_json::from_str(json).unwrap();
        assert_eq!(c.target().unwrap(), CompareTarget::Exists(false));
        assert_eq!(serde_json::to_string(&c).unwrap(), json);
        let two: Compare =
            serde_json::from_str(r#"{"key":"k","op":"=","version":1,"mod_revision":2}"#).unwrap();
        assert!(two.target().unwrap_err().contains("2 targets"));
        let none: Compare = serde_json::from_str(r#"{"key":"k","op":"="}"#).unwrap();
        assert!(none.target().unwrap_err().contains("0 targets"));
        let less: Compare = serde_json::from_str(r#"{"key":"k","op":"<","exists":true}"#).unwrap();
        assert!(less.target().unwrap_err().contains("= or !="));
        let binary = Compare::new("k", CompareOp::Equal, CompareTarget::Value(vec![0xff]));
        assert_eq!(binary.target().unwrap(), CompareTarget::Value(vec![0xff]));
    }

    #[test]
    fn transactions_read_as_documented() {
        let json = r#"{
            "compare": [{"key": "leader", "op": "=", "mod_revision": 0}],
            "success": [{"put": {"key": "leader", "value": "node-1"}},
                        {"delete_prefix": {"prefix": "candidates/"}}],
            "failure": [{"get": {"key": "leader"}}]
        }"#;
        let txn: TxnRequest = serde_json::from_str(json).unwrap();
        assert_eq!(txn.success[0], TxnOp::put("leader", b"node-1"));
        assert_eq!(txn.success[1], TxnOp::delete_prefix("candidates/"));
        assert_eq!(txn.failure[0], TxnOp::get("leader"));
        assert!(serde_json::from_str::<TxnRequest>(r#"{"compares": []}"#).is_err());
        let result = TxnResult::Delete { deleted: 2 };
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            r#"{"delete":{"deleted":2}}"#
        );
    }
}
