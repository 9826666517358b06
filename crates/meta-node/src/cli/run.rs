//! Client commands: each group sends its requests through the typed
//! client and hands the typed answer to [`render`](super::render).

use anyhow::Context;
use meta_client::{Client, Consistency, Precondition, wire};
use serde::Serialize;
use serde_json::Value;

use super::render;
use super::{
    ApikeyCommand, Cli, ClusterCommand, Command, ConfigCommand, KvCommand, LeaseCommand, LockArgs,
    ShardCommand, WatchArgs, check_path_segments, split_pair,
};

/// What a client command answered: the JSON to print with `--json`, the
/// text to print without, and whether the command's answer is a success
/// (`apikey verify` of a bad secret is not: the exit status says so).
pub(crate) struct Outcome {
    /// The answer as the API gave it.
    pub(crate) json: Value,
    /// The answer for people.
    pub(crate) text: String,
    /// Whether the command succeeded.
    pub(crate) ok: bool,
}

impl Outcome {
    fn new<T: Serialize>(answer: &T, text: String) -> anyhow::Result<Outcome> {
        Ok(Outcome {
            json: serde_json::to_value(answer)?,
            text,
            ok: true,
        })
    }

    /// What to print: JSON or text.
    pub(crate) fn shown(&self, json: bool) -> String {
        if json {
            serde_json::to_string_pretty(&self.json).unwrap_or_default()
        } else {
            self.text.clone()
        }
    }
}

fn consistency(stale: bool) -> Consistency {
    if stale {
        Consistency::Stale
    } else {
        Consistency::Linearizable
    }
}

/// A value argument: `-` reads stdin, `@FILE` reads a file, anything else
/// is the value itself.
fn value_arg(arg: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    if arg == "-" || arg == "@-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the value from stdin")?;
        return Ok(bytes);
    }
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("reading the value from {path}")),
        None => Ok(arg.as_bytes().to_vec()),
    }
}

/// `kv get --raw`: the value's bytes, to write to stdout as they are;
/// `None` for every other command.
pub(crate) async fn raw_output(cli: &Cli) -> anyhow::Result<Option<Vec<u8>>> {
    let Command::Kv(KvCommand::Get {
        key,
        stale,
        raw: true,
    }) = &cli.command
    else {
        return Ok(None);
    };
    check_path_segments(key)?;
    let value = cli.client()?.get_raw(key, consistency(*stale)).await?;
    Ok(Some(
        value.ok_or_else(|| not_found(format!("no key `{key}`")))?,
    ))
}

/// The API's `not_found`, for reads the client answers with `None`.
fn not_found(message: String) -> meta_client::ClientError {
    meta_client::ClientError::Api {
        status: 404,
        error: wire::ErrorBody::new("not_found", message),
    }
}

/// Runs a client command against `cli.addr`.
pub(crate) async fn run_client(cli: &Cli) -> anyhow::Result<Outcome> {
    let client = cli.client()?;
    match &cli.command {
        Command::Health => {
            let health = client.health().await?;
            let text = health.status.clone();
            Outcome::new(&health, text)
        }
        Command::Kv(cmd) => kv(&client, cmd).await,
        Command::Cluster(cmd) => cluster(&client, cmd).await,
        Command::Shard(cmd) => shard(&client, cmd).await,
        Command::Apikey(cmd) => apikey(&client, cmd).await,
        Command::Config(cmd) => config(&client, cmd).await,
        Command::Lease(cmd) => lease(&client, cmd).await,
        _ => anyhow::bail!("not a client command"),
    }
}

async fn kv(client: &Client, cmd: &KvCommand) -> anyhow::Result<Outcome> {
    match cmd {
        KvCommand::Get { key, stale, .. } => {
            check_path_segments(key)?;
            let kv = client
                .get_with(key, consistency(*stale))
                .await?
                .ok_or_else(|| not_found(format!("no key `{key}`")))?;
            let text = render::value(&kv.value);
            Outcome::new(&kv, text)
        }
        KvCommand::Put {
            key,
            value,
            if_revision,
            if_absent,
            lease,
        } => {
            check_path_segments(key)?;
            let value = value_arg(value)?;
            let precondition = match (if_revision, if_absent) {
                (Some(rev), _) => Some(Precondition::ModRevision(*rev)),
                (None, true) => Some(Precondition::Absent),
                (None, false) => None,
            };
            let written = match (precondition, lease) {
                (Some(p), _) => client.put_if(key, value, p).await?,
                (None, Some(lease)) => client.put_with_lease(key, value, *lease).await?,
                (None, None) => client.put(key, value).await?,
            };
            // The revision is in the `--json` answer.
            Outcome::new(&written, "ok".into())
        }
        KvCommand::Delete { key, if_revision } => {
            check_path_segments(key)?;
            let done = match if_revision {
                Some(rev) => {
                    client
                        .delete_if(key, Precondition::ModRevision(*rev))
                        .await?
                }
                None => client.delete(key).await?,
            };
            let text = render::deleted(&done);
            Outcome::new(&done, text)
        }
        KvCommand::DeletePrefix { prefix } => {
            let done = client.delete_prefix(prefix).await?;
            let text = render::deleted(&done);
            Outcome::new(&done, text)
        }
        KvCommand::List {
            prefix,
            limit,
            stale,
        } => {
            let all = client.list_all(prefix, *limit, consistency(*stale)).await?;
            let text = render::key_values(&all.items);
            Outcome::new(&all, text)
        }
        KvCommand::Txn { file } => {
            let bytes = value_arg(&format!("@{file}"))?;
            let request: wire::TxnRequest = serde_json::from_slice(&bytes)
                .with_context(|| format!("{file} is not the JSON of a transaction"))?;
            let done = client.txn(&request).await?;
            let text = render::txn(&done);
            Outcome::new(&done, text)
        }
        KvCommand::Cas { key, expected, new } => {
            let request = wire::CasRequest {
                key: key.clone(),
                expected: expected.clone(),
                new: new.clone(),
                ..Default::default()
            };
            let done = client.cas(&request).await?;
            Outcome::new(&done, "swapped".into())
        }
    }
}

/// `ID=RAFT_ADDR,API_ADDR`.
/// `--member` flags as a membership: ids once each, addresses host:port.
pub(crate) fn parse_members(
    specs: &[String],
) -> anyhow::Result<std::collections::BTreeMap<u64, meta_raft::types::NodeAddr>> {
    let mut members = std::collections::BTreeMap::new();
    for spec in specs {
        let m = member(spec)?;
        for addr in [&m.raft, &m.api] {
            if !meta_node::config::is_host_port(addr) {
                anyhow::bail!("`{spec}`: `{addr}` is not host:port");
            }
        }
        if m.id == 0 {
            anyhow::bail!("`{spec}`: node ids start at 1");
        }
        if members
            .insert(m.id, meta_raft::types::NodeAddr::new(m.raft, m.api))
            .is_some()
        {
            anyhow::bail!("node {} is listed twice", m.id);
        }
    }
    Ok(members)
}

fn member(m: &str) -> anyhow::Result<wire::MemberSpec> {
    let (id, addrs) = split_pair(m, "ID=RAFT_ADDR,API_ADDR")?;
    let (raft, api) = addrs
        .split_once(',')
        .with_context(|| format!("`{m}` is not ID=RAFT_ADDR,API_ADDR"))?;
    Ok(wire::MemberSpec {
        api: api.into(),
        id: id
            .parse()
            .with_context(|| format!("`{id}` is not a node id"))?,
        raft: raft.into(),
    })
}

async fn cluster(client: &Client, cmd: &ClusterCommand) -> anyhow::Result<Outcome> {
    match cmd {
        ClusterCommand::Status => {
            let status = client.status().await?;
            let text = render::status(&status);
            Outcome::new(&status, text)
        }
        ClusterCommand::Hash => {
            let hash = client.hash().await?;
            let text = format!(
                "{} at applied index {}",
                hash.hash,
                hash.applied_index.map_or("-".into(), |i| i.to_string())
            );
            Outcome::new(&hash, text)
        }
        ClusterCommand::Init { members } => {
            let members = members
                .iter()
                .map(|m| member(m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let done = client.init(&members).await?;
            let text = render::init(&done);
            Outcome::new(&done, text)
        }
        ClusterCommand::AddLearner {
            id,
            raft,
            api,
            wait_secs,
        } => {
            let request = wire::LearnerRequest {
                id: *id,
                raft: raft.clone(),
                api: api.clone(),
                wait_secs: Some(*wait_secs),
            };
            let done = client.add_learner(&request).await?;
            let text = render::learner(&done);
            Outcome::new(&done, text)
        }
        ClusterCommand::Alarms => {
            let alarms = client.alarms().await?;
            let text = render::alarms(&alarms);
            Outcome::new(&alarms, text)
        }
        ClusterCommand::ClearAlarms => {
            let done = client.clear_alarms().await?;
            Outcome::new(&done, "alarms cleared".into())
        }
        ClusterCommand::TransferLeader { to } => {
            let done = client.transfer_leader(*to).await?;
            let text = format!("node {} leads (term {})", done.leader, done.term);
            Outcome::new(&done, text)
        }
        ClusterCommand::RemoveMember { id, force } => {
            let done = client.remove_member(*id, *force).await?;
            let text = format!("removed {} {}", done.was, done.removed);
            Outcome::new(&done, text)
        }
        ClusterCommand::Members { voters, force } => {
            let request = wire::MembershipRequest {
                voters: voters.iter().copied().collect(),
                retain: false,
                force: *force,
            };
            let done = client.change_membership(&request).await?;
            Outcome::new(&done, "membership changed".into())
        }
        ClusterCommand::Nodes => {
            let nodes = client.nodes().await?;
            let text = render::nodes(&nodes.nodes);
            Outcome::new(&nodes, text)
        }
        ClusterCommand::SetNode {
            id,
            address,
            state,
            labels,
            lease,
        } => {
            let mut map = std::collections::BTreeMap::new();
            for l in labels {
                let (k, v) = split_pair(l, "KEY=VALUE")?;
                map.insert(k.to_string(), v.to_string());
            }
            let state = match state.as_str() {
                "active" => wire::NodeState::Active,
                "draining" => wire::NodeState::Draining,
                "down" => wire::NodeState::Down,
                other => anyhow::bail!(
                    "unknown node state `{other}` (expected active, draining or down)"
                ),
            };
            let request = wire::NodeRequest {
                address: address.clone(),
                state,
                labels: map,
            };
            let node = match lease {
                Some(lease) => client.set_node_with_lease(*id, &request, *lease).await?,
                None => client.set_node(*id, &request).await?,
            };
            Outcome::new(&node, "ok".into())
        }
        ClusterCommand::RemoveNode { id } => {
            let done = client.remove_node(*id).await?;
            Outcome::new(&done, "ok".into())
        }
    }
}

async fn shard(client: &Client, cmd: &ShardCommand) -> anyhow::Result<Outcome> {
    match cmd {
        ShardCommand::Get => {
            let map = client.shards().await?;
            let text = render::shards(&map);
            Outcome::new(&map, text)
        }
        ShardCommand::Set {
            expected_version,
            shards,
        } => {
            let mut map = std::collections::BTreeMap::new();
            for s in shards {
                let (id, nodes) = split_pair(s, "SHARD=NODE,NODE,...")?;
                let id: u64 = id
                    .trim()
                    .parse()
                    .with_context(|| format!("`{id}` is not a shard id"))?;
                let replicas = nodes
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse()
                            .with_context(|| format!("`{n}` is not a node id"))
                    })
                    .collect::<anyhow::Result<_>>()?;
                map.insert(id, wire::ShardAssignment { replicas });
            }
            let request = wire::ShardsRequest {
                expected_version: *expected_version,
                shards: map,
            };
            let done = client.set_shards(&request).await?;
            let text = format!("shard map version {}", done.version);
            Outcome::new(&done, text)
        }
    }
}

async fn apikey(client: &Client, cmd: &ApikeyCommand) -> anyhow::Result<Outcome> {
    match cmd {
        ApikeyCommand::Create {
            id,
            name,
            scopes,
            expires_in_secs,
        } => {
            let request = wire::ApiKeyRequest {
                id: id.clone(),
                name: name.clone(),
                scopes: scopes.clone(),
                expires_in_secs: *expires_in_secs,
            };
            let created = client.create_api_key(&request).await?;
            let text = format!(
                "id:    {}\ntoken: {}\n(the token is shown once: store it now)",
                created.id, created.token
            );
            Outcome::new(&created, text)
        }
        ApikeyCommand::Revoke { id } => {
            check_path_segments(id)?;
            let done = client.revoke_api_key(id).await?;
            Outcome::new(&done, "revoked".into())
        }
        ApikeyCommand::List => {
            let keys = client.api_keys().await?;
            let text = render::api_keys(&keys.api_keys, meta_node::http::now_ms());
            Outcome::new(&keys, text)
        }
        ApikeyCommand::Verify { id, secret } => {
            let request = wire::VerifyRequest {
                id: id.clone(),
                secret: secret.clone(),
            };
            let verdict = client.verify_api_key(&request).await?;
            let mut outcome = Outcome::new(&verdict, verdict.status.clone())?;
            outcome.ok = verdict.valid;
            Ok(outcome)
        }
    }
}

async fn config(client: &Client, cmd: &ConfigCommand) -> anyhow::Result<Outcome> {
    match cmd {
        ConfigCommand::Get { name } => {
            check_path_segments(name)?;
            let value = client
                .config(name)
                .await?
                .ok_or_else(|| not_found(format!("no config entry `{name}`")))?;
            let entry = wire::ConfigEntry {
                name: name.clone(),
                value: value.clone(),
            };
            Outcome::new(&entry, value)
        }
        ConfigCommand::Set { name, value } => {
            check_path_segments(name)?;
            let done = client.set_config(name, value).await?;
            Outcome::new(&done, "ok".into())
        }
        ConfigCommand::Delete { name } => {
            check_path_segments(name)?;
            let done = client.delete_config(name).await?;
            Outcome::new(&done, "ok".into())
        }
        ConfigCommand::List => {
            let config = client.config_all().await?;
            let text = render::config(&config.config);
            Outcome::new(&config, text)
        }
    }
}

async fn lease(client: &Client, cmd: &LeaseCommand) -> anyhow::Result<Outcome> {
    match cmd {
        LeaseCommand::Grant { ttl_secs } => {
            let lease = client.grant_lease(*ttl_secs).await?;
            let text = lease.id.to_string();
            Outcome::new(&lease, text)
        }
        LeaseCommand::Keepalive { id, .. } => {
            let lease = client.keep_alive_once(*id).await?;
            let text = render::lease(&lease);
            Outcome::new(&lease, text)
        }
        LeaseCommand::Get { id } => {
            let lease = client
                .lease(*id)
                .await?
                .ok_or_else(|| not_found_code("lease_not_found", format!("no lease {id}")))?;
            let text = render::lease(&lease);
            Outcome::new(&lease, text)
        }
        LeaseCommand::Revoke { id } => {
            let done = client.revoke_lease(*id).await?;
            Outcome::new(&done, "ok".into())
        }
        LeaseCommand::List => {
            let all = client.leases().await?;
            let text = render::leases(&all.leases);
            Outcome::new(&all, text)
        }
    }
}

/// The API's error `code` (404), for reads the client answers with `None`.
fn not_found_code(code: &str, message: String) -> meta_client::ClientError {
    meta_client::ClientError::Api {
        status: 404,
        error: wire::ErrorBody::new(code, message),
    }
}

/// A command that ends with this exit status (`lock -- CMD` exits with
/// CMD's).
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub(crate) struct ExitStatus(pub u8);

/// Prints one line to stdout now; `false` once the reader went away.
fn print_line(line: &str) -> anyhow::Result<bool> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Long-running client commands (`watch`, `lease keepalive`, `lock`),
/// which print as they go; `false` for every other command.
pub(crate) async fn run_streaming(cli: &Cli) -> anyhow::Result<bool> {
    match &cli.command {
        Command::Watch(args) => watch(&cli.client()?, args, cli.json).await?,
        Command::Lease(LeaseCommand::Keepalive { id, once: false }) => {
            keepalive(&cli.client()?, *id, cli.json).await?
        }
        Command::Lock(args) => lock(&cli.client()?, args).await?,
        _ => return Ok(false),
    }
    Ok(true)
}

async fn watch(client: &Client, args: &WatchArgs, json: bool) -> anyhow::Result<()> {
    use meta_client::{WatchMessage, WatchRequest, WatchTarget};
    let target = match (args.cluster, args.shards, args.config) {
        (true, _, _) => WatchTarget::Cluster,
        (_, true, _) => WatchTarget::Shards,
        (_, _, true) => WatchTarget::Config,
        _ => WatchTarget::Kv,
    };
    let mut request = if args.exact && target == WatchTarget::Kv {
        WatchRequest::kv_key(&args.prefix)
    } else {
        WatchRequest::prefix(target, &args.prefix)
    };
    if let Some(from) = args.from_revision {
        request = request.from_revision(from);
    }
    if args.prev {
        request = request.with_prev();
    }
    let mut watch = client.watch(request);
    let mut seen = 0u64;
    while args.count.is_none_or(|count| seen < count) {
        let line = match watch.next().await? {
            WatchMessage::Event(event) => {
                if args.exact && event.key != args.prefix {
                    continue;
                }
                seen += 1;
                match json {
                    true => serde_json::to_string(&event)?,
                    false => render::watch_event(&event),
                }
            }
            WatchMessage::Progress(revision) if args.progress => match json {
                true => serde_json::json!({"type": "progress", "revision": revision}).to_string(),
                false => format!("{revision} progress"),
            },
            WatchMessage::Progress(_) => continue,
        };
        if !print_line(&line)? {
            break;
        }
    }
    Ok(())
}

async fn keepalive(client: &Client, id: u64, json: bool) -> anyhow::Result<()> {
    let lease = client.keep_alive_once(id).await?;
    let line = match json {
        true => serde_json::to_string(&lease)?,
        false => format!("keeping lease {id} alive (ttl {}s)", lease.ttl_secs),
    };
    print_line(&line)?;
    tokio::select! {
        lost = client.keep_alive(id, lease.ttl_secs) => {
            Err(anyhow::Error::new(lost).context(format!("lease {id} is lost")))
        }
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn lock(client: &Client, args: &LockArgs) -> anyhow::Result<()> {
    check_path_segments(&args.name)?;
    let held = client.lock(&args.name, args.ttl).await?;
    let Some((program, rest)) = args.command.split_first() else {
        print_line(&format!(
            "locked `{}` (lease {}, revision {}); Ctrl-C releases it",
            held.key, held.lease, held.revision
        ))?;
        let outcome = tokio::select! {
            lost = client.keep_alive(held.lease, args.ttl) => {
                Err(anyhow::Error::new(lost).context(format!("the lock `{}` is lost", held.key)))
            }
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
        client.unlock(&held).await?;
        return outcome;
    };
    // The command gets the lock, not this CLI's credentials.
    let spawned = tokio::process::Command::new(program)
        .args(rest)
        .env("META_LOCK_KEY", &held.key)
        .env("META_LOCK_REVISION", held.revision.to_string())
        .env_remove("META_TOKEN")
        .env_remove("META_TOKEN_FILE")
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            client.unlock(&held).await?;
            return Err(anyhow::Error::new(e).context(format!("starting `{program}`")));
        }
    };
    let status = tokio::select! {
        status = child.wait() => status,
        lost = client.keep_alive(held.lease, args.ttl) => {
            let _ = child.kill().await;
            return Err(anyhow::Error::new(lost)
                .context(format!("the lock `{}` is lost: `{program}` was stopped", held.key)));
        }
    };
    client.unlock(&held).await?;
    let status = status.with_context(|| format!("waiting for `{program}`"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(ExitStatus(u8::try_from(code).unwrap_or(1)).into()),
        None => Err(ExitStatus(1).into()),
    }
}
