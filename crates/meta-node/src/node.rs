//! Starting and stopping a node: stores, Raft, peer transport, client API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meta_raft::types::{NodeAddr, Raft};
use meta_raft::{LogStore, MetadataReader, StateMachine};
use meta_store_api::MetadataStore;
use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{INIT_KEY_ID, INIT_TOKEN_FILE, ROOT_KEY_ID, ROOT_TOKEN_FILE, Token};
use crate::config::Config;
use crate::credentials::{keep_root_key, load_or_create_token, read_token, wait_for_key};
use crate::error::NodeError;
use crate::files;
use crate::http::{ApiState, AuthState, router};
use crate::identity::Identity;
use crate::tls;
use crate::transport::{PeerSecurity, PeerTls};
use crate::transport::{TcpNetwork, serve};

/// A running node.
pub struct Node {
    /// Its configuration.
    pub config: Config,
    /// Its Raft.
    pub raft: Raft,
    /// Its views.
    pub reader: MetadataReader,
    /// The bound client API address.
    pub api_addr: SocketAddr,
    /// The bound peer transport address.
    pub raft_addr: SocketAddr,
    stores: Vec<Arc<dyn MetadataStore>>,
    /// Flushed into its store on shutdown.
    state_machine: meta_raft::StateMachine,
    stop_api: watch::Sender<bool>,
    api_task: JoinHandle<()>,
    transport_task: JoinHandle<()>,
    alarm_task: JoinHandle<()>,
    lease_task: JoinHandle<()>,
    /// Writes an idle node's applies to its state store.
    flush_task: JoinHandle<()>,
    announce_task: JoinHandle<()>,
    reads: crate::read_index::ReadIndex,
}

/// Every [`meta_raft::FLUSH_AFTER`], writes what the state machine applied
/// and still holds to its store, when due: applies only check at the next
/// apply, and an idle node's store should not stay behind for long.
async fn flush_when_due(sm: meta_raft::StateMachine) {
    let mut tick = tokio::time::interval(meta_raft::FLUSH_AFTER);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut failing = false;
    loop {
        tick.tick().await;
        let sm = sm.clone();
        let flushed =
            tokio::task::spawn_blocking(move || sm.flush_if_due().map_err(|e| e.to_string())).await;
        match flushed {
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!("writing applied changes to the state store: {e}");
            }
            Ok(Ok(())) => failing = false,
            _ => {}
        }
    }
}

async fn open_store(
    config: &Config,
    engine: crate::engine::Engine,
    dir: std::path::PathBuf,
) -> Result<Arc<dyn MetadataStore>, NodeError> {
    let options = config.engine_options();
    tokio::task::spawn_blocking(move || engine.open(&dir, &options))
        .await
        .map_err(|e| NodeError::raft("opening a store (the task panicked)", e))?
}

fn raft_config(config: &Config) -> Result<openraft::Config, NodeError> {
    let raft = &config.raft;
    openraft::Config {
        cluster_name: "meta-node".into(),
        heartbeat_interval: raft.heartbeat_ms,
        election_timeout_min: raft.election_timeout_min_ms,
        election_timeout_max: raft.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(raft.snapshot_every),
        max_in_snapshot_log_to_keep: raft.snapshot_every.min(1000),
        install_snapshot_timeout: 10_000,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|e| NodeError::config("raft", e.to_string()))
}

/// The peer transport's TLS: the configured certificates, else the node's
/// own CA and certificate in `<data_dir>/tls/` (made on first start).
fn peer_tls(config: &Config) -> Result<Option<PeerTls>, NodeError> {
    if config.insecure {
        return Ok(None);
    }
    let files = match config.tls_files() {
        Some(files) => files,
        None => {
            let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
            for addr in [config.advertised_api(), config.advertised_raft()] {
                if let Some((host, _)) = addr.rsplit_once(':') {
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    if !hosts.iter().any(|h| h == host) {
                        hosts.push(host.to_string());
                    }
                }
            }
            tls::ensure_self_signed(&config.data_dir.join("tls"), config.node_id, &hosts)?
        }
    };
    Ok(Some(PeerTls {
        client: tls::peer_client_config(&files)?,
        server: tls::peer_server_config(&files)?,
    }))
}

/// The root token to install (if this node bootstraps or has one waiting
/// in `root.token`) and the init token to accept (if it waits for `cluster
/// init`). `insecure` nodes have neither.
fn credentials(
    config: &Config,
    initialized: bool,
) -> Result<(Option<Token>, Option<Token>), NodeError> {
    if config.insecure {
        return Ok((None, None));
    }
    let (root, init) = (
        config.data_dir.join(ROOT_TOKEN_FILE),
        config.data_dir.join(INIT_TOKEN_FILE),
    );
    if initialized {
        // Part of a cluster: the init token is spent.
        let _ = std::fs::remove_file(&init);
        return Ok((read_token(&root)?, None));
    }
    if config.bootstrap {
        return Ok((Some(load_or_create_token(&root, ROOT_KEY_ID)?), None));
    }
    Ok((
        read_token(&root)?,
        Some(load_or_create_token(&init, INIT_KEY_ID)?),
    ))
}

impl Node {
    /// Opens the stores, starts Raft and both listeners, and — with
    /// `bootstrap` on an uninitialised node — makes it a single-node cluster.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        config.validate()?;
        files::private_dir(&config.data_dir)?;
        let identity = Arc::new(Identity::open(
            &config.data_dir,
            config.node_id,
            config.engines(),
        )?);
        let peer_security = PeerSecurity {
            tls: peer_tls(&config)?,
            identity: identity.clone(),
        };
        // Connection budgets out of the descriptors this process may open.
        let nofile = crate::conn::raise_nofile();
        let limits = &config.limits;
        let (clients, peers) = crate::conn::budgets(
            nofile,
            limits.max_client_connections,
            limits.max_peer_connections,
        );
        let idle = Duration::from_secs(limits.idle_timeout_secs);
        let per_address = limits.max_connections_per_address;
        let api_budget = crate::conn::Budget::new("client API", clients, per_address, idle);
        let peer_budget = crate::conn::Budget::new("peer", peers, per_address, idle);
        let api_tls = config
            .tls_files()
            .map(|files| tls::api_server_config(&files))
            .transpose()?;
        let raft_config = Arc::new(raft_config(&config)?);
        let (log_dir, state_dir) = config.store_dirs();
        let stores_existed =
            crate::identity::holds_files(&log_dir) || crate::identity::holds_files(&state_dir);
        let log_store = open_store(&config, config.log_engine(), log_dir.clone()).await?;
        let state_store = if state_dir == log_dir {
            log_store.clone()
        } else {
            open_store(&config, config.state_engine(), state_dir).await?
        };
        let raft_listener = TcpListener::bind(&config.raft_listen)
            .await
            .map_err(|e| NodeError::io(format!("binding raft_listen {}", config.raft_listen), e))?;
        let api_listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| NodeError::io(format!("binding listen {}", config.listen), e))?;
        let raft_addr = raft_listener
            .local_addr()
            .map_err(|e| NodeError::io("reading the raft address", e))?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|e| NodeError::io("reading the API address", e))?;

        let sm = StateMachine::open_with(
            state_store.clone(),
            config.data_dir.join("snapshots"),
            meta_raft::HistoryLimits {
                revisions: config.watch.history_revisions,
                bytes: config.watch.history_bytes,
            },
        )
        .await
        .map_err(|e| NodeError::raft("opening the state machine", e))?;
        let telemetry = crate::telemetry::Telemetry::start();
        sm.instrument(&telemetry.raft);
        sm.keep_free_disk(config.limits.min_free_disk_bytes);
        let state_machine = sm.clone();
        let state_machine_handle = sm.clone();
        let reader = sm.reader();
        let history = sm.history();
        let network = TcpNetwork::new(
            peer_security.clone(),
            Duration::from_millis(config.raft.election_timeout_min_ms / 2),
        );
        let peers = network.contacts();
        let alarm_network = network.clone();
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network,
            LogStore::new(log_store.clone())
                .purging_only_applied(&sm)
                .instrumented(&telemetry.raft),
            sm,
        )
        .await
        .map_err(|e| NodeError::raft("starting Raft", e))?;
        let transfer = Arc::<std::sync::atomic::AtomicU64>::default();
        let reads = crate::read_index::Batcher {
            me: config.node_id,
            raft: raft.clone(),
            network: alarm_network.clone(),
            transfer: transfer.clone(),
            timeout: Duration::from_secs(config.limits.request_timeout_secs),
            // A leader that does not answer within two election timeouts
            // is being replaced: its reads are redirected meanwhile.
            ask_within: Duration::from_millis(2 * config.raft.election_timeout_max_ms),
            batch: telemetry.read_batch.clone(),
        }
        .start();
        let reads_handle = reads.clone();
        let transport_task = tokio::spawn(serve(
            raft_listener,
            crate::transport::PeerServices {
                raft: raft.clone(),
                contacts: peers.clone(),
                reads: reads.clone(),
            },
            peer_security,
            peer_budget,
        ));

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::raft("reading whether Raft is initialised", e))?;
        // A directory whose store once held this node's data never starts
        // empty: the store was lost, damaged or switched for another
        // engine's. Nor does a store found without an identity file (of an
        // older build, or the file was removed): only a truly empty
        // directory is new. (A log on the mem engine forgets everything by
        // design.)
        let cluster = identity.cluster();
        let remembers = config.log_engine() != crate::engine::Engine::Mem;
        if remembers
            && !initialized
            && (identity.held_data() || (identity.is_new() && stores_existed))
        {
            transport_task.abort();
            let _ = raft.shutdown().await;
            let (log_dir, state_dir) = config.store_dirs();
            return Err(NodeError::EmptyOverData {
                store: if log_dir == state_dir {
                    log_dir
                } else {
                    state_dir
                },
                why: if identity.held_data() {
                    format!("this data directory belongs to cluster {cluster}")
                } else {
                    "the store existed before this directory had an identity.toml".into()
                },
            });
        }
        let bootstrapping = config.bootstrap && !initialized;
        // Marked once the store holds an applied entry (a node that
        // crashed before that, a learner on its first contact, a failed
        // bootstrap, may start empty again).
        if remembers {
            let (identity, mut metrics) = (identity.clone(), raft.metrics());
            tokio::spawn(async move {
                if metrics.wait_for(|m| m.last_applied.is_some()).await.is_ok()
                    && let Err(e) = identity.mark_held_data()
                {
                    tracing::warn!("recording in identity.toml that the store holds data: {e}");
                }
            });
        }
        let (root_token, init_token) = credentials(&config, initialized)?;
        let proposer = meta_raft::Proposer::instrumented(raft.clone(), 256, &telemetry.raft);
        // Ends with Raft (its metrics channel closes).
        tokio::spawn(crate::telemetry::log_raft_events(
            raft.clone(),
            telemetry.clone(),
        ));
        let alarm_task = tokio::spawn(
            crate::alarm::Watch {
                node_id: config.node_id,
                raft: raft.clone(),
                proposer: proposer.clone(),
                reader: reader.clone(),
                network: alarm_network.clone(),
                data_dir: config.data_dir.clone(),
                quota_bytes: config.limits.quota_bytes,
                min_free_disk_bytes: config.limits.min_free_disk_bytes,
            }
            .run(),
        );
        let announce_task = tokio::spawn(alarm_network.clone().announce(
            raft.clone(),
            config.node_id,
            config.engines().to_string(),
        ));
        let deadlines = crate::lease::Deadlines::default();
        let flush_task = tokio::spawn(flush_when_due(state_machine_handle.clone()));
        let lease_task = tokio::spawn(crate::lease::run(
            config.node_id,
            raft.clone(),
            proposer.clone(),
            reader.clone(),
            deadlines.clone(),
        ));
        let state = ApiState::new(crate::http::Services {
            raft: raft.clone(),
            proposer,
            reader: reader.clone(),
            node_id: config.node_id,
            network: alarm_network,
            transfer,
            ops: Arc::default(),
            reads,
            telemetry,
            state_machine,
            stores_on_disk: {
                let (log_dir, state_dir) = config.store_dirs();
                if log_dir == state_dir {
                    Arc::from([("both", config.log_engine(), log_dir)])
                } else {
                    Arc::from([
                        ("log", config.log_engine(), log_dir),
                        ("state", config.state_engine(), state_dir),
                    ])
                }
            },
            request_timeout: Duration::from_secs(config.limits.request_timeout_secs),
            scheme: if api_tls.is_some() { "https" } else { "http" },
            identity: identity.clone(),
            auth: Arc::new(AuthState::new(
                config.insecure,
                config.data_dir.clone(),
                init_token,
            )),
            peers,
            limits: config.limits.clone(),
            // A second under the idle deadline, which would cut the
            // connection of a request that waits longer.
            longest_wait: idle.saturating_sub(Duration::from_secs(1)),
            fanout: crate::http::watch::Fanout::start(&history)
                .map_err(|e| NodeError::io("starting the watch thread", e))?,
            history,
            watch: config.watch.clone(),
            deadlines,
        });
        if config.log_engine() == crate::engine::Engine::Mem {
            // Nothing replays lost applies: each goes to the store at once.
            state_machine_handle.write_through(true);
            tracing::warn!(
                "the Raft log is on the mem engine: this node forgets its vote and log on restart; \
                 use it only for ephemeral single-node setups and tests"
            );
        }
        if config.insecure {
            tracing::warn!(
                "running with `insecure`: no client authentication, plaintext peers; \
                 anyone who reaches this node's ports controls it"
            );
        }
        if bootstrapping {
            let founded = identity.found_cluster()?;
            let me = NodeAddr::new(config.advertised_raft(), config.advertised_api());
            if let Err(e) = raft
                .initialize(BTreeMap::from([(config.node_id, me)]))
                .await
            {
                let _ = identity.unfound_cluster(founded);
                return Err(NodeError::raft("initialising a single-node cluster", e));
            }
            tracing::info!("initialised a new single-node cluster");
        }
        if let Some(root) = root_token {
            keep_root_key(state.clone(), root.clone());
            // A new node answers its first client with the root key in place.
            if bootstrapping && !wait_for_key(&reader, &root, Duration::from_secs(10)).await {
                tracing::warn!(
                    "the root API key is not installed yet; it will be once this node leads"
                );
            }
        }
        // Served only now: a bootstrapping node's first client finds the
        // root key in place.
        let (stop_api, mut stopped) = watch::channel(false);
        let app = router(state.clone());
        let header_timeout_secs = config.limits.header_timeout_secs;
        let body_timeout_secs = config.limits.body_timeout_secs;
        let api_task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let header_timeout = Duration::from_secs(header_timeout_secs);
            let body_timeout = Duration::from_secs(body_timeout_secs);
            match api_tls {
                Some(config) => match tls::HttpsListener::new(
                    api_listener,
                    config,
                    crate::transport::HANDSHAKE_TIMEOUT,
                    api_budget,
                ) {
                    Ok(listener) => {
                        crate::http::server::serve(
                            listener,
                            app,
                            header_timeout,
                            body_timeout,
                            shutdown,
                        )
                        .await;
                    }
                    Err(e) => tracing::error!("client API stopped: {e}"),
                },
                None => {
                    let listener = crate::conn::BudgetedListener::new(api_listener, api_budget);
                    crate::http::server::serve(
                        listener,
                        app,
                        header_timeout,
                        body_timeout,
                        shutdown,
                    )
                    .await;
                }
            }
        });

        let mut stores = vec![log_store];
        if !Arc::ptr_eq(&stores[0], &state_store) {
            stores.push(state_store);
        }
        Ok(Node {
            config,
            raft,
            reader,
            api_addr,
            raft_addr,
            stores,
            state_machine: state_machine_handle,
            stop_api,
            api_task,
            transport_task,
            alarm_task,
            lease_task,
            flush_task,
            announce_task,
            reads: reads_handle,
        })
    }

    /// Waits until this node leads; false if it does not within `timeout`.
    pub fn wait_to_lead(
        &self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let mut metrics = self.raft.server_metrics();
        async move {
            tokio::time::timeout(
                timeout,
                metrics.wait_for(|m| m.state == openraft::ServerState::Leader),
            )
            .await
            .is_ok_and(|r| r.is_ok())
        }
    }

    /// Waits until this node knows a leader (itself included).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<u64> {
        let mut metrics = self.raft.server_metrics();
        let found =
            tokio::time::timeout(timeout, metrics.wait_for(|m| m.current_leader.is_some())).await;
        found.ok()?.ok()?.current_leader
    }

    /// Waits until this node's Raft stops on a fatal error (a failed log or
    /// state-machine write, a full disk, a panic in the core) and returns
    /// it. The node then answers every write and linearizable read with an
    /// error; the `meta-node` binary exits so that it restarts on its data.
    pub async fn stopped(&self) -> String {
        crate::telemetry::raft_stopped(&self.raft).await
    }

    /// Stops serving, shuts Raft down and closes the stores cleanly.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.stop_api.send(true);
        // In-flight requests get a while to finish; a write stuck without a
        // quorum must not keep the stores open forever.
        let mut api_task = self.api_task;
        if tokio::time::timeout(Duration::from_secs(10), &mut api_task)
            .await
            .is_err()
        {
            tracing::warn!("client API did not drain in 10 s; aborting in-flight requests");
            api_task.abort();
        }
        self.transport_task.abort();
        self.alarm_task.abort();
        self.lease_task.abort();
        self.announce_task.abort();
        self.reads.stop();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        // Applies reach the store in batches: the store left behind holds
        // everything applied (the log would replay it anyway).
        self.flush_task.abort();
        let sm = self.state_machine;
        let flushed = match sm.failed() {
            true => Ok(()),
            false => tokio::task::spawn_blocking(move || {
                sm.flush()
                    .map_err(|e| NodeError::raft("flushing the state machine", e))
            })
            .await
            .unwrap_or_else(|e| {
                Err(NodeError::raft(
                    "flushing the state machine (the task panicked)",
                    e,
                ))
            }),
        };
        // The stores close whatever happened: the log replays the rest.
        for store in self.stores {
            tokio::task::spawn_blocking(move || store.close())
                .await
                .map_err(|e| NodeError::raft("closing a store (the task panicked)", e))?
                .map_err(|source| NodeError::Store {
                    context: "closing the store".into(),
                    source,
                })?;
        }
        flushed
    }
}
