//! The `meta-node` binary: `serve`, client commands, offline tools.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use cli::{AuthCommand, CertsCommand, Cli, Command, SnapshotCommand};
use meta_node::{Node, offline};
use tracing_subscriber::EnvFilter;

/// What is logged unless `RUST_LOG` says otherwise. openraft logs every
/// failed call to a down peer, every retry, and a warning per stale message
/// at each election; the node logs what matters itself, once (peer
/// reachability in the transport, leader and membership changes,
/// snapshots and fatal errors in `meta_node::telemetry`).
const LOG_FILTER: &str = "info,openraft=warn,openraft::replication=off,\
     openraft::core::raft_core=off,openraft::network::snapshot_transport=error,\
     openraft::engine::handler::replication_handler=error,fjall=warn,lsm_tree=warn";

fn main() -> ExitCode {
    // Everything this process creates (stores, snapshots, tokens, keys) is
    // private to its user: files 0600, directories 0700.
    meta_node::files::private_umask();
    let cli = Cli::parse_args();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(LOG_FILTER));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => cli::LogFormat::Text,
    };
    match format {
        cli::LogFormat::Json => logs.json().init(),
        cli::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    let result = runtime.block_on(run(cli));
    // A store call stuck on a failing disk must not keep the process from
    // exiting (dropping the runtime would wait for it).
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Refused>() => ExitCode::FAILURE,
        Err(e) if e.is::<cli::ExitStatus>() => {
            ExitCode::from(e.downcast_ref::<cli::ExitStatus>().map_or(1, |s| s.0))
        }
        Err(e) => {
            if json {
                eprintln!("{}", json_error(&e));
            } else {
                eprintln!("error: {}", report(&e));
            }
            match e.downcast_ref::<meta_node::NodeError>() {
                Some(e) if e.refuses_data() => ExitCode::from(meta_node::EXIT_DATA_REFUSED),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// The error as JSON (`--json`): the API's error object when the node
/// answered one (with its HTTP `status`), else `code` `client_error`.
fn json_error(e: &anyhow::Error) -> String {
    let error = match e.downcast_ref::<meta_client::ClientError>() {
        Some(meta_client::ClientError::Api { status, error }) => {
            let mut v = serde_json::to_value(error).unwrap_or_default();
            v["status"] = (*status).into();
            v
        }
        Some(c @ meta_client::ClientError::OutcomeUnknown { status, .. }) => {
            serde_json::json!({"code": "outcome_unknown", "message": c.to_string(), "status": status})
        }
        _ => serde_json::json!({"code": "client_error", "message": report(e)}),
    };
    serde_json::json!({ "error": error }).to_string()
}

/// The error and its causes, each cause once: an error that already shows
/// its source in its own message is not followed by it again.
fn report(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let quiet = cli.json;
    match &cli.command {
        Command::Serve(args) => serve(args.config(cli.data_dir.as_ref())?).await,
        Command::Snapshot(SnapshotCommand::Save {
            store: Some(store),
            out,
            ..
        }) => {
            let bytes = offline::snapshot_save(store, out, quiet)?;
            println!("saved {} ({bytes} bytes)", out.display());
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Save {
            store: None,
            out,
            stale,
        }) => {
            let consistency = match stale {
                true => meta_client::Consistency::Stale,
                false => meta_client::Consistency::Linearizable,
            };
            let backup = cli.client()?.backup(consistency).await?;
            let (index, revision) = (backup.applied_index, backup.revision);
            let (bytes, sha256) = offline::save_online(backup, out).await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "file": out, "bytes": bytes, "applied_index": index,
                        "revision": revision, "sha256": sha256,
                    })
                );
            } else {
                println!(
                    "saved {} ({bytes} bytes, verified) at applied index {index}, revision {revision}; sha256 {sha256}",
                    out.display()
                );
            }
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::RestoreCluster {
            input,
            node_id,
            members,
            engine,
        }) => {
            let data_dir = cli.client_data_dir();
            let members = cli::parse_members(members)?;
            let seeded = offline::restore_new_cluster(
                input,
                &data_dir,
                meta_node::identity::Engines {
                    log: *engine,
                    state: *engine,
                },
                *node_id,
                &members,
                quiet,
            )?;
            println!(
                "restored {} records into {} as node {node_id} of new cluster {} (applied index {}, revision {}); start it: meta-node serve --data-dir {} --node-id {node_id} --engine {engine} --raft-listen {} --listen {}",
                seeded.records,
                data_dir.display(),
                seeded.cluster,
                seeded.applied_index,
                seeded.revision,
                data_dir.display(),
                members[node_id].raft,
                members[node_id].api,
            );
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Restore {
            store,
            input,
            force,
        }) => {
            let records = offline::snapshot_restore(store, input, *force, quiet)?;
            println!(
                "restored {records} records into {}:{}",
                store.engine,
                store.dir.display()
            );
            Ok(())
        }
        Command::Migrate { from, to, force } => {
            let migrated = offline::migrate(from, to, *force, quiet)?;
            println!(
                "migrated {} records from {}:{} to {}:{}",
                migrated.records,
                from.engine,
                from.dir.display(),
                to.engine,
                to.dir.display()
            );
            if let Some(identity) = migrated.identity {
                println!(
                    "{} now names {} for this store: start the node on it (the old store is left as it was)",
                    identity.display(),
                    to.engine
                );
            }
            Ok(())
        }
        Command::Verify { store } => {
            println!("{}", offline::verify(store)?);
            Ok(())
        }
        Command::Certs(CertsCommand::CreateCa { dir, days }) => {
            meta_node::tls::create_ca(dir, *days)?;
            println!(
                "created the cluster CA: {} (share it) and {} (keep it secret, off the nodes if you can)",
                dir.join("ca.pem").display(),
                dir.join("ca.key").display()
            );
            Ok(())
        }
        Command::Certs(CertsCommand::CreateNode {
            id,
            hosts,
            ca_dir,
            out,
            days,
        }) => {
            let out = out
                .clone()
                .unwrap_or_else(|| ca_dir.join(format!("node-{id}")));
            let files = meta_node::tls::create_node_cert(ca_dir, *id, hosts, &out, *days)?;
            println!(
                "created node {id}'s certificate for {}: --tls-ca {} --tls-cert {} --tls-key {}",
                hosts.join(", "),
                files.ca.display(),
                files.cert.display(),
                files.key.display()
            );
            Ok(())
        }
        Command::Auth(AuthCommand::ResetRoot) => {
            let dir = cli.client_data_dir();
            let path = meta_node::credentials::reset_root(&dir)?;
            println!(
                "wrote a new admin token to {}; start the node: once it leads, it installs the key",
                path.display()
            );
            Ok(())
        }
        _ => {
            if cli::run_streaming(&cli).await? {
                return Ok(());
            }
            if let Some(bytes) = cli::raw_output(&cli).await? {
                return write_out(&bytes);
            }
            let outcome = cli::run_client(&cli).await?;
            write_out(format!("{}\n", outcome.shown(cli.json)).as_bytes())?;
            if !outcome.ok {
                return Err(Refused.into());
            }
            Ok(())
        }
    }
}

/// A command whose answer says no (`apikey verify` of a bad secret): it
/// printed its answer and exits 1.
#[derive(Debug, thiserror::Error)]
#[error("the answer is a refusal")]
struct Refused;

/// Writes to stdout; a reader that went away (`| head -1`) is not an
/// error.
fn write_out(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn serve(config: meta_node::Config) -> anyhow::Result<()> {
    if cfg!(feature = "failpoints") {
        tracing::warn!("built with the `failpoints` test feature: not for production");
    }
    #[cfg(feature = "failpoints")]
    meta_node::pause::from_env()?;
    // Asked for a test hook this build lacks: an error, not silence.
    #[cfg(not(feature = "failpoints"))]
    if let Ok(point) = std::env::var("META_PAUSE_AT") {
        anyhow::bail!("META_PAUSE_AT={point}: this build has no failpoints (feature `failpoints`)");
    }
    let node = Node::start(config).await?;
    #[cfg(feature = "failpoints")]
    meta_node::pause::arm();
    let c = &node.config;
    let (log_dir, state_dir) = c.store_dirs();
    let stores = if log_dir == state_dir {
        format!("{} store in {}", c.log_engine(), log_dir.display())
    } else {
        format!(
            "log on {} in {}, state on {} in {}",
            c.log_engine(),
            log_dir.display(),
            c.state_engine(),
            state_dir.display()
        )
    };
    let (scheme, peers) = match (c.insecure, c.tls_files().is_some()) {
        (true, _) => ("http", "plaintext"),
        (false, true) => ("https", "mTLS"),
        (false, false) => ("http", "mTLS"),
    };
    println!(
        "meta-node {} listening: client API {scheme}://{}, peers {} ({peers}); {stores}",
        c.node_id, node.api_addr, node.raft_addr
    );
    println!(
        "dashboard: {scheme}://{}/ui/ (sign in with a token)",
        node.api_addr
    );
    let token_file = |name: &str| Some(c.data_dir.join(name)).filter(|p| p.exists());
    if c.insecure {
        println!("INSECURE: no client authentication, plaintext peers");
    } else if let Some(root) = token_file(meta_node::auth::ROOT_TOKEN_FILE) {
        println!(
            "admin token: {} (the CLI run from here finds it)",
            root.display()
        );
    } else if let Some(init) = token_file(meta_node::auth::INIT_TOKEN_FILE) {
        println!(
            "waiting for `cluster init`; its one-time token: {}",
            init.display()
        );
    }
    // Only what this node knows for sure: after a restart the leader it
    // remembers may have lost its place (the log says when one is heard).
    // Said by a task: signals are handled from the next line on.
    let leads = node.wait_to_lead(Duration::from_secs(5));
    let id = c.node_id;
    tokio::spawn(async move {
        if leads.await {
            println!("leader: node {id} (this node)");
        }
    });
    tokio::select! {
        () = shutdown_signal() => {
            println!("shutting down");
            node.shutdown().await?;
            Ok(())
        }
        fatal = node.stopped() => {
            // Fail-stop: a node that cannot write its log must not linger
            // half-alive; restarted (by hand or by a supervisor) on its
            // data once the cause is fixed, it recovers like after a crash.
            tracing::error!("Raft stopped: {fatal}");
            match tokio::time::timeout(Duration::from_secs(10), node.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("closing after the failure: {e}"),
                Err(_) => tracing::warn!("closing after the failure took over 10 s; exiting anyway"),
            }
            anyhow::bail!("Raft stopped: {fatal}; the node exits (restart it once the cause is fixed)")
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
