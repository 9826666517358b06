//! Who may do what on the client API: bearer tokens, scopes, and the one
//! table that maps every route to what it needs ([`routes`]).
//!
//! A client presents `Authorization: Bearer <id>.<secret>`: one of the
//! store's own API keys. The node checks it against the replicated hash
//! (constant time) in its applied state, so a revocation takes effect on a
//! node as soon as that node applied it. Missing or wrong credentials are
//! `401 unauthenticated`; a valid key without the scope is `403
//! permission_denied`.
//!
//! Scopes ([`Scope`]), least privilege first:
//!
//! | scope | allows |
//! |---|---|
//! | `kv:read[:PREFIX]` | read user keys (under `PREFIX`, if given) |
//! | `kv:write[:PREFIX]` | read and write user keys (under `PREFIX`) |
//! | `config:read`, `config:write` | config entries |
//! | `cluster:read`, `cluster:write` | the cluster map |
//! | `shards:read`, `shards:write` | the shard map |
//! | `monitor` | content hash, metrics |
//! | `read` | every `*:read` above and `monitor` |
//! | `write` | `read` and every `*:write` above |
//! | `apikeys:verify` | check other keys' secrets (for gateways) |
//! | `apikeys:create` | list keys; create keys with no more than its own scopes |
//! | `admin` | everything: membership, API keys, all data |
//!
//! Any live key may read `/v1/cluster/status` (members, leader, term): a
//! client needs the members to follow a redirect without sending its token
//! elsewhere. No key may grant more than the key that creates it
//! ([`Scope::covers`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use axum::http::Method;
use meta_raft::ApiKeySecret;
use meta_raft::model::ApiKeyId;

/// The id of the API key a bootstrapping node creates (`root.token`).
pub const ROOT_KEY_ID: &str = "root";
/// The id part of a node's one-time `init.token`.
pub const INIT_KEY_ID: &str = "init";
/// File, in the data directory, holding the root token a bootstrapping
/// node (or `cluster init`) created.
pub const ROOT_TOKEN_FILE: &str = "root.token";
/// File, in the data directory of a node that does not bootstrap, holding
/// the one-time token that authorises `cluster init` on it.
pub const INIT_TOKEN_FILE: &str = "init.token";

/// A part of the metadata that scopes name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// User keys (`/v1/kv`, `/v1/cas`).
    Kv,
    /// Config entries.
    Config,
    /// The cluster map (`/v1/cluster/nodes`).
    Cluster,
    /// The shard map.
    Shards,
}

impl Area {
    fn name(self) -> &'static str {
        match self {
            Area::Kv => "kv",
            Area::Config => "config",
            Area::Cluster => "cluster",
            Area::Shards => "shards",
        }
    }
}

/// One permission an API key carries. Parsed from its text form
/// (`kv:write:app/`); unknown text is refused when a key is created and
/// grants nothing if found in an older store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Admin,
    /// Every read, and `monitor`.
    Read,
    /// Every read and write of data; not membership, not API keys.
    Write,
    /// Status, content hash, metrics.
    Monitor,
    /// Reads (or reads and writes) of one area; for `kv`, of the keys
    /// under `prefix` (empty: all keys).
    Access {
        /// The area.
        area: Area,
        /// Whether writes are allowed too.
        write: bool,
        /// Key prefix (`kv` only; empty for the other areas).
        prefix: String,
    },
    /// Check other keys' secrets.
    ApiKeysVerify,
    /// List keys, and create keys with no more than the creator's scopes.
    ApiKeysCreate,
}

impl Scope {
    /// Parses a scope's text form; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let scope = match text {
            "admin" => Scope::Admin,
            "read" => Scope::Read,
            "write" => Scope::Write,
            "monitor" => Scope::Monitor,
            "apikeys:verify" => Scope::ApiKeysVerify,
            "apikeys:create" => Scope::ApiKeysCreate,
            _ => {
                let mut parts = text.splitn(3, ':');
                let area = match parts.next() {
                    Some("kv") => Area::Kv,
                    Some("config") => Area::Config,
                    Some("cluster") => Area::Cluster,
                    Some("shards") => Area::Shards,
                    _ => return Err(unknown_scope(text)),
                };
                let write = match parts.next() {
                    Some("read") => false,
                    Some("write") => true,
                    _ => return Err(unknown_scope(text)),
                };
                let prefix = parts.next().unwrap_or("").to_string();
                if area != Area::Kv && !prefix.is_empty() {
                    return Err(format!(
                        "scope `{text}`: only `kv` scopes take a key prefix"
                    ));
                }
                Scope::Access {
                    area,
                    write,
                    prefix,
                }
            }
        };
        Ok(scope)
    }

    /// Whether holding `self` implies holding `other`: a key may grant
    /// `other` to a new key only if one of its own scopes covers it.
    pub fn covers(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Admin, _) => true,
            (Scope::Write, o) => matches!(
                o,
                Scope::Read | Scope::Write | Scope::Monitor | Scope::Access { .. }
            ),
            (Scope::Read, o) => matches!(
                o,
                Scope::Read | Scope::Monitor | Scope::Access { write: false, .. }
            ),
            (
                Scope::Access {
                    area: a1,
                    write: w1,
                    prefix: p1,
                },
                Scope::Access {
                    area: a2,
                    write: w2,
                    prefix: p2,
                },
            ) => a1 == a2 && (*w1 || !*w2) && p2.starts_with(p1.as_str()),
            (a, b) => a == b,
        }
    }
}

fn unknown_scope(text: &str) -> String {
    format!(
        "unknown scope `{text}` (expected admin, read, write, monitor, apikeys:verify, apikeys:create, \
         kv:read[:PREFIX], kv:write[:PREFIX], or config|cluster|shards:read|write)"
    )
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Read => f.write_str("read"),
            Scope::Write => f.write_str("write"),
            Scope::Monitor => f.write_str("monitor"),
            Scope::ApiKeysVerify => f.write_str("apikeys:verify"),
            Scope::ApiKeysCreate => f.write_str("apikeys:create"),
            Scope::Access {
                area,
                write,
                prefix,
            } => {
                let access = if *write { "write" } else { "read" };
                write!(f, "{}:{access}", area.name())?;
                if !prefix.is_empty() {
                    write!(f, ":{prefix}")?;
                }
                Ok(())
            }
        }
    }
}

/// Who is calling, once authenticated.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A live API key and the scopes it carries (unknown scope texts, from
    /// an older store, are dropped: they grant nothing).
    Key {
        /// The key's id.
        id: ApiKeyId,
        /// Its scopes.
        scopes: Vec<Scope>,
        /// When it expires (Unix ms): keys it creates expire no later.
        expires_at_ms: Option<u64>,
    },
    /// The node's one-time init token: may only initialise the cluster.
    Init,
    /// The node runs with `insecure = true`: no authentication at all.
    Anyone,
}

impl Principal {
    /// Whether this caller holds a scope covering `need`.
    pub fn may(&self, need: &Scope) -> bool {
        match self {
            Principal::Anyone => true,
            Principal::Init => false,
            Principal::Key { scopes, .. } => scopes.iter().any(|s| s.covers(need)),
        }
    }

    /// Whether this caller may read (or write) some user keys: the route
    /// check for `kv` routes, whose exact key is checked by the handler.
    fn may_some_kv(&self, write: bool) -> bool {
        match self {
            Principal::Anyone => true,
            Principal::Init => false,
            Principal::Key { scopes, .. } => scopes.iter().any(|s| match s {
                Scope::Access {
                    area: Area::Kv,
                    write: w,
                    ..
                } => *w || !write,
                other => other.covers(&kv_scope(write, "")),
            }),
        }
    }
}

/// Checks an API key id a client asks for: 1 to 64 of `A-Z a-z 0-9 . _ -`,
/// and not a name a route or the node reserves (so every key can be named
/// in a URL and printed on one line).
pub fn check_key_id(id: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Err(format!(
            "API key id `{}` must be 1 to 64 of A-Z a-z 0-9 . _ -",
            id.escape_debug()
        ));
    }
    if [INIT_KEY_ID, "verify"].contains(&id) {
        return Err(format!("API key id `{id}` is reserved"));
    }
    Ok(())
}

/// The `kv` scope needed to read or write `key` (or list under a prefix).
pub fn kv_scope(write: bool, key: &str) -> Scope {
    Scope::Access {
        area: Area::Kv,
        write,
        prefix: key.to_string(),
    }
}

/// What a route needs of its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: anyone may call it.
    Public,
    /// Any live API key, whatever its scopes (the cluster's members and
    /// leader: every client needs them to follow a redirect safely).
    Authenticated,
    /// A scope covering this one.
    Scope(Scope),
    /// A `kv` scope covering the key (or list prefix) of the request; the
    /// handler checks the exact key.
    Kv {
        /// Whether the route writes.
        write: bool,
    },
    /// Some `kv` scope, whatever its prefix (routes that name no key:
    /// leases, whose handlers check their owner).
    AnyKv {
        /// Whether the route writes.
        write: bool,
    },
    /// `admin`, or, on a node not yet initialised, its `init.token`.
    Init,
}

impl Need {
    /// Whether `principal` passes the route-level check.
    pub fn allows(&self, principal: &Principal) -> bool {
        match self {
            Need::Public => true,
            Need::Authenticated => !matches!(principal, Principal::Init),
            Need::Scope(scope) => principal.may(scope),
            Need::Kv { write } | Need::AnyKv { write } => principal.may_some_kv(*write),
            Need::Init => matches!(principal, Principal::Init) || principal.may(&Scope::Admin),
        }
    }

    /// How `docs/security.md` names it.
    pub fn describe(&self) -> String {
        match self {
            Need::Public => "none (public)".into(),
            Need::Authenticated => "any valid key".into(),
            Need::Scope(scope) => format!("`{scope}`"),
            Need::Kv { write: false } => "`kv:read` covering the key or prefix".into(),
            Need::Kv { write: true } => "`kv:write` covering the key".into(),
            Need::AnyKv { write: false } => {
                "any `kv:read` scope (and the lease's owner, `read` or `admin`)".into()
            }
            Need::AnyKv { write: true } => {
                "any `kv:write` scope (and, for an existing lease, its owner or `admin`)".into()
            }
            Need::Init => "`admin`, or the node's `init.token` before init".into(),
        }
    }
}

/// One row of the authorization table.
#[derive(Clone, Debug)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path as the router spells it.
    pub path: &'static str,
    /// What the caller needs.
    pub need: Need,
}

fn route(method: Method, path: &'static str, need: Need) -> Route {
    Route { method, path, need }
}

fn read(area: Area) -> Need {
    Need::Scope(Scope::Access {
        area,
        write: false,
        prefix: String::new(),
    })
}

fn write(area: Area) -> Need {
    Need::Scope(Scope::Access {
        area,
        write: true,
        prefix: String::new(),
    })
}

/// Every route of the client API and what it needs. The router refuses a
/// route that is not listed here (deny by default), the attack tests call
/// every row with a key of every scope, and `docs/security.md` holds this
/// table as [`routes_markdown`] renders it (a test compares them).
pub fn routes() -> Vec<Route> {
    use Method as M;
    let admin = || Need::Scope(Scope::Admin);
    let monitor = || Need::Scope(Scope::Monitor);
    vec![
        route(M::GET, "/health", Need::Public),
        route(M::GET, "/", Need::Public),
        route(M::GET, "/ui/", Need::Public),
        route(M::GET, "/ui/app.js", Need::Public),
        route(M::GET, "/ui/style.css", Need::Public),
        route(M::GET, "/v1/auth/whoami", Need::Authenticated),
        route(M::GET, "/metrics", monitor()),
        route(M::GET, "/v1/snapshot", admin()),
        route(M::POST, "/v1/cluster/leader", admin()),
        route(M::GET, "/v1/kv", Need::Kv { write: false }),
        route(M::GET, "/v1/kv/{*key}", Need::Kv { write: false }),
        route(M::PUT, "/v1/kv/{*key}", Need::Kv { write: true }),
        route(M::DELETE, "/v1/kv/{*key}", Need::Kv { write: true }),
        route(M::POST, "/v1/cas", Need::Kv { write: true }),
        route(M::DELETE, "/v1/kv", Need::Kv { write: true }),
        route(M::POST, "/v1/txn", Need::Kv { write: false }),
        route(M::GET, "/v1/watch", Need::Kv { write: false }),
        route(M::GET, "/v1/leases", Need::AnyKv { write: false }),
        route(M::POST, "/v1/leases", Need::AnyKv { write: true }),
        route(M::GET, "/v1/leases/{id}", Need::AnyKv { write: false }),
        route(M::DELETE, "/v1/leases/{id}", Need::AnyKv { write: true }),
        route(
            M::POST,
            "/v1/leases/{id}/keepalive",
            Need::AnyKv { write: true },
        ),
        route(M::GET, "/v1/watch/cluster", read(Area::Cluster)),
        route(M::GET, "/v1/watch/shards", read(Area::Shards)),
        route(M::GET, "/v1/watch/config", read(Area::Config)),
        route(M::GET, "/v1/cluster/nodes", read(Area::Cluster)),
        route(M::PUT, "/v1/cluster/nodes/{id}", write(Area::Cluster)),
        route(M::DELETE, "/v1/cluster/nodes/{id}", write(Area::Cluster)),
        route(M::GET, "/v1/shards", read(Area::Shards)),
        route(M::PUT, "/v1/shards", write(Area::Shards)),
        route(M::GET, "/v1/config", read(Area::Config)),
        route(M::GET, "/v1/config/{name}", read(Area::Config)),
        route(M::PUT, "/v1/config/{name}", write(Area::Config)),
        route(M::DELETE, "/v1/config/{name}", write(Area::Config)),
        route(M::GET, "/v1/apikeys", Need::Scope(Scope::ApiKeysCreate)),
        route(M::POST, "/v1/apikeys", Need::Scope(Scope::ApiKeysCreate)),
        route(
            M::POST,
            "/v1/apikeys/verify",
            Need::Scope(Scope::ApiKeysVerify),
        ),
        route(M::DELETE, "/v1/apikeys/{id}", admin()),
        route(M::GET, "/v1/cluster/status", Need::Authenticated),
        route(M::GET, "/v1/cluster/hash", monitor()),
        route(M::POST, "/v1/cluster/init", Need::Init),
        route(M::GET, "/v1/cluster/alarms", monitor()),
        route(M::DELETE, "/v1/cluster/alarms", admin()),
        route(M::POST, "/v1/cluster/learners", admin()),
        route(M::DELETE, "/v1/cluster/members/{id}", admin()),
        route(M::POST, "/v1/cluster/membership", admin()),
    ]
}

/// What a route needs, or `None` for a method and path not in [`routes`].
/// The table is built once: the middleware asks for every request.
pub fn need(method: &Method, path: &str) -> Option<&'static Need> {
    static TABLE: LazyLock<HashMap<&'static str, Vec<(Method, Need)>>> = LazyLock::new(|| {
        let mut table: HashMap<&'static str, Vec<(Method, Need)>> = HashMap::new();
        for r in routes() {
            table.entry(r.path).or_default().push((r.method, r.need));
        }
        table
    });
    TABLE
        .get(path)?
        .iter()
        .find(|(m, _)| m == method)
        .map(|(_, need)| need)
}

/// The authorization table as `docs/security.md` shows it.
pub fn routes_markdown() -> String {
    let mut out = String::from("| method | route | needs |\n|---|---|---|\n");
    for r in routes() {
        out += &format!(
            "| `{}` | `{}` | {} |\n",
            r.method,
            r.path,
            r.need.describe()
        );
    }
    out
}

/// A bearer token: an API key id and its secret, written `<id>.<secret>`.
/// It prints as `<id>.[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The key id (public).
    pub id: ApiKeyId,
    /// The secret.
    pub secret: ApiKeySecret,
}

impl Token {
    /// Parses `<id>.<secret>` (the id may itself contain dots; secrets
    /// never do).
    pub fn parse(text: &str) -> Option<Token> {
        let (id, secret) = text.trim().rsplit_once('.')?;
        if id.is_empty() || secret.is_empty() {
            return None;
        }
        Some(Token {
            id: ApiKeyId(id.to_string()),
            secret: ApiKeySecret::from_presented(secret),
        })
    }

    /// A fresh random token for key `id`.
    pub fn generate(id: &str) -> Result<Token, getrandom::Error> {
        Ok(Token {
            id: ApiKeyId(id.to_string()),
            secret: ApiKeySecret::generate()?,
        })
    }

    /// The text to hand to its owner (`<id>.<secret>`): the only way to
    /// see the secret.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret.expose())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.[REDACTED]", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Scope {
        Scope::parse(text).unwrap()
    }

    #[test]
    fn scopes_parse_and_print_back() {
        for text in [
            "admin",
            "read",
            "write",
            "monitor",
            "apikeys:verify",
            "apikeys:create",
            "kv:read",
            "kv:write:app/",
            "config:read",
            "cluster:write",
            "shards:read",
        ] {
            assert_eq!(s(text).to_string(), text);
        }
        for bad in ["", "root", "kv", "kv:delete", "shards:read:x", "ADMIN"] {
            let err = Scope::parse(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn coverage_is_least_privilege() {
        assert!(s("admin").covers(&s("apikeys:create")));
        assert!(s("write").covers(&s("kv:write:x")) && s("write").covers(&s("monitor")));
        assert!(!s("write").covers(&s("admin")) && !s("write").covers(&s("apikeys:create")));
        assert!(s("read").covers(&s("shards:read")) && !s("read").covers(&s("shards:write")));
        assert!(s("kv:write:app/").covers(&s("kv:read:app/x")));
        assert!(!s("kv:write:app/").covers(&s("kv:read:other")));
        assert!(!s("kv:write:app/").covers(&s("kv:write")));
        assert!(!s("kv:read").covers(&s("kv:write:a")));
        assert!(s("shards:write").covers(&s("shards:read")));
        assert!(!s("shards:write").covers(&s("cluster:read")));
        assert!(!s("apikeys:create").covers(&s("apikeys:verify")));
    }

    #[test]
    fn key_ids_are_printable_and_not_reserved() {
        for good in ["deploy-bot", "a.b_c", "root-1f2e3d4c"] {
            check_key_id(good).unwrap();
        }
        for bad in [
            "",
            "init",
            "verify",
            "a/b",
            "line\nbreak",
            "nul\0",
            &"x".repeat(65),
        ] {
            assert!(check_key_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_hide_their_secret() {
        let t = Token::parse("deploy.bot.abc123").unwrap();
        assert_eq!(t.id.0, "deploy.bot");
        assert_eq!(t.secret.expose(), "abc123");
        assert_eq!(format!("{t:?}"), "deploy.bot.[REDACTED]");
        assert!(Token::parse("nodot").is_none() && Token::parse(".x").is_none());
        assert!(Token::parse("x.").is_none());
    }

    #[test]
    fn a_prefix_bot_passes_kv_routes_but_not_others() {
        let bot = Principal::Key {
            id: ApiKeyId("bot".into()),
            scopes: vec![s("kv:write:app/")],
            expires_at_ms: None,
        };
        assert!(Need::Kv { write: true }.allows(&bot));
        assert!(bot.may(&kv_scope(true, "app/x")) && !bot.may(&kv_scope(false, "b")));
        assert!(!need(&Method::GET, "/v1/shards").unwrap().allows(&bot));
        assert!(!Need::Init.allows(&bot) && Need::Init.allows(&Principal::Init));
        assert!(
            !need(&Method::GET, "/v1/kv")
                .unwrap()
                .allows(&Principal::Init)
        );
    }
}
