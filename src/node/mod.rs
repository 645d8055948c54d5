//! The node runtime: opens storage, the application and the network, runs the
//! consensus actor that feeds the pure core and carries out its outputs, and
//! serves the gRPC API and metrics. Owns shutdown.
//!
//! - [`actor`]: the event loop and the one place outputs take effect
//!   (persist-before-send).
//! - [`blocks`]: building proposals and checking blocks.
//! - [`gossip`]: round-state announcements and re-sending what peers lack.
//! - [`evidence`]: the evidence pool, its checks and gossip.
//! - [`catchup`]: fetching whole blocks with commits from peers ahead of us.
//! - [`timers`], [`status`], [`error`].

pub mod actor;
pub mod block_server;
pub mod blocks;
pub mod catchup;
pub mod error;
pub mod evidence;
#[cfg(feature = "faults")]
mod faulty;
#[cfg(not(feature = "faults"))]
mod faulty {
    //! A build without the `faults` feature: the one question the honest
    //! runtime asks of the misbehaviour, always answered no.

    impl super::actor::Actor {
        /// Whether to leave a block request unanswered: never.
        pub(super) fn withholds_blocks(&self) -> bool {
            false
        }
    }
}
pub mod gossip;
pub mod notify;
pub mod peer_fault;
pub mod status;
pub mod timers;
pub mod txpool;
mod txs;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use actor::now_ms;
pub use error::NodeError;
pub use peer_fault::PeerFault;
pub use status::{NodeStatus, PeerStatus, SyncPhase};

use crate::app::Application;
use crate::app::ledger::Ledger;
use crate::config::{Genesis, Home, NodeConfig, read_key};
use crate::consensus::{Consensus, Input, Params};
use crate::metrics::{NodeMetrics, Renderer};
use crate::net::{NetConfig, Network, PeerAddr};
use crate::storage::{
    BlockStore, EvidenceStore, MetaStore, SigningStateFile, SledStore, SnapshotStore, TxIndexStore,
    WalEntry, WalStore,
};
use crate::types::{Height, PublicKey, Timestamp};

/// Everything a node stores, behind one object.
pub trait Store:
    BlockStore + WalStore + MetaStore + TxIndexStore + SnapshotStore + EvidenceStore
{
}

impl<T: BlockStore + WalStore + MetaStore + TxIndexStore + SnapshotStore + EvidenceStore> Store
    for T
{
}

/// A running node.
pub struct NodeHandle {
    /// Address peers connect to (QUIC).
    pub p2p_addr: SocketAddr,
    /// Address of the gRPC API.
    pub grpc_addr: SocketAddr,
    /// Address of `/metrics`, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The node's key.
    pub node_key: PublicKey,
    status: watch::Receiver<NodeStatus>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), NodeError>>,
}

impl NodeHandle {
    /// The latest published status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status updates.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Asks the node to stop and waits until it has.
    pub async fn stop(self) -> Result<(), NodeError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the node stops (on a fatal error, or after `stop`).
    pub async fn wait(self) -> Result<(), NodeError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(NodeError::Inconsistent(format!("node task failed: {e}"))),
        }
    }

    /// A sender that stops the node when `true` is sent.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

async fn bind_tcp(addr: &str, what: &'static str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Listen {
            what,
            addr: addr.to_string(),
            source,
        })
}

/// Replays logged state deltas the application has not applied yet, checking
/// each against the root its header commits to.
fn replay_app(store: &dyn Store, app: &dyn Application) -> Result<(), NodeError> {
    let latest = store.latest_height();
    let applied = app.committed().0;
    if applied > latest {
        // The state is flushed only once the log below it is durable; this is a
        // damaged or foreign data directory, not something to run on.
        return Err(NodeError::Inconsistent(format!(
            "the application state is at height {applied} but the block log ends at {latest}: \
             the data directory is damaged; restore it or start over with state sync"
        )));
    }
    let from = applied.next().max(store.base_height());
    for h in from.0..=latest.0 {
        let h = Height(h);
        let stored = store
            .stored(h)?
            .ok_or_else(|| NodeError::Inconsistent(format!("block {h} missing from the log")))?;
        let (_, delta) = crate::codec::decode_outcome(&stored.app_delta)
            .map_err(|e| NodeError::Inconsistent(format!("outcome of block {h}: {e}")))?;
        let root = app.replay(h, &delta)?;
        if root != stored.block.header.app_hash {
            return Err(NodeError::Inconsistent(format!(
                "state root after replaying height {h} is {root}, the block says {}",
                stored.block.header.app_hash
            )));
        }
    }
    Ok(())
}

/// Renders the network's counters.
fn render_net_stats(s: &crate::net::NetStats, r: &mut Renderer) {
    use crate::net::Channel;
    let per = |f: fn(&crate::net::ChannelStats) -> u64| -> Vec<(&'static str, u64)> {
        Channel::ALL
            .iter()
            .map(|c| (c.name(), f(s.channel(*c))))
            .collect()
    };
    r.counter_vec(
        "consort_p2p_messages_in_total",
        "Messages received from peers, per channel.",
        "channel",
        &per(|c| c.msgs_in),
    );
    r.counter_vec(
        "consort_p2p_bytes_in_total",
        "Bytes received from peers, per channel.",
        "channel",
        &per(|c| c.bytes_in),
    );
    r.counter_vec(
        "consort_p2p_messages_out_total",
        "Messages sent to peers, per channel.",
        "channel",
        &per(|c| c.msgs_out),
    );
    r.counter_vec(
        "consort_p2p_bytes_out_total",
        "Bytes sent to peers, per channel.",
        "channel",
        &per(|c| c.bytes_out),
    );
    r.counter_vec(
        "consort_p2p_dropped_total",
        "Outbound messages dropped because a peer's queue was full, per channel.",
        "channel",
        &per(|c| c.dropped),
    );
    r.counter_vec(
        "consort_p2p_rate_limited_total",
        "Inbound messages dropped because their peer exceeded the channel's rate, per channel.",
        "channel",
        &per(|c| c.rate_limited),
    );
    r.counter(
        "consort_p2p_bad_frames_total",
        "Oversized or undecodable frames received (the peer was disconnected).",
        s.bad_frames,
    );
    r.counter(
        "consort_p2p_refused_handshakes_total",
        "Connections refused during the TLS handshake (key not permitted).",
        s.refused_handshakes,
    );
    r.counter(
        "consort_p2p_handshake_retries_total",
        "Inbound connection attempts answered with a QUIC Retry (address validation).",
        s.handshake_retries,
    );
    r.counter(
        "consort_p2p_handshakes_refused_per_ip_total",
        "Inbound connection attempts refused: their address had too many handshakes in progress.",
        s.handshakes_refused_per_ip,
    );
    r.counter(
        "consort_p2p_handshakes_refused_busy_total",
        "Inbound connection attempts refused: too many handshakes in progress.",
        s.handshakes_refused_busy,
    );
    r.gauge(
        "consort_p2p_pending_handshakes",
        "Inbound handshakes in progress.",
        s.pending_handshakes as f64,
    );
}

/// Admitted transactions waiting to be gossiped.
const GOSSIP_QUEUE: usize = 16 * 1024;
/// Most transactions per gossip frame.
const GOSSIP_BATCH: usize = 512;
/// Most bytes per gossip frame.
const GOSSIP_BATCH_BYTES: usize = 1024 * 1024;

/// Least time between two gossip frames that are not full. Peers take a
/// bounded number of frames per second on the mempool channel
/// (`NetTuning::rate_limit`) and score a peer that sends more: one frame per
/// admitted transaction got honest validators banned by each other at 2,000
/// tx/s. Waiting lets the next frame carry what arrived meanwhile, which also
/// gives the receivers larger batches of signatures to check at once.
const GOSSIP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// Sends admitted transactions to peers in batches: whatever accumulated while
/// the previous batch was sent (and at least [`GOSSIP_INTERVAL`] since) goes
/// out in the next frame.
async fn gossip_txs(mut rx: mpsc::Receiver<bytes::Bytes>, net: Network) {
    while let Some(first) = rx.recv().await {
        let mut size = first.len();
        let mut batch = vec![first];
        while batch.len() < GOSSIP_BATCH && size < GOSSIP_BATCH_BYTES {
            match rx.try_recv() {
                Ok(tx) => {
                    size += tx.len();
                    batch.push(tx);
                }
                Err(_) => break,
            }
        }
        let full = batch.len() >= GOSSIP_BATCH || size >= GOSSIP_BATCH_BYTES;
        net.broadcast(crate::net::NetMessage::Txs(batch));
        if !full {
            tokio::time::sleep(GOSSIP_INTERVAL).await;
        }
    }
}

/// A path of the configuration, relative to the home unless absolute.
fn in_home(home: &Home, path: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        home.root().join(p)
    }
}

/// The certificates the API depends on: `("node" | "org_ca", what it says)`.
type ApiCertificates = Vec<(&'static str, crate::pki::CertInfo)>;

/// How the API listener is secured: TLS with the node's certificate and the
/// consortium's CAs, or plaintext (loopback, or `rpc.insecure`, warned about);
/// and the certificates that then expire.
fn rpc_security(
    home: &Home,
    cfg: &NodeConfig,
    genesis: &Genesis,
    node: &PublicKey,
    metrics: &Arc<NodeMetrics>,
) -> Result<(crate::rpc::Security, ApiCertificates), NodeError> {
    let config_err = |field: &str, reason: String| {
        NodeError::Config(crate::config::ConfigError::invalid(
            &home.config(),
            field,
            reason,
        ))
    };
    if cfg.rpc.tls_cert.is_empty() {
        if cfg.rpc_is_insecure() {
            warn!(
                listen = %cfg.rpc.listen,
                "rpc.insecure: the API serves plaintext, with no caller checked, on an address that is not loopback"
            );
        }
        return Ok((crate::rpc::Security::Plaintext, Vec::new()));
    }
    let read = |field: &str, path: &str| {
        let p = in_home(home, path);
        std::fs::read_to_string(&p).map_err(|e| config_err(field, format!("{}: {e}", p.display())))
    };
    let cert = read("rpc.tls_cert", &cfg.rpc.tls_cert)?;
    let key = read("rpc.tls_key", &cfg.rpc.tls_key)?;
    let trust = genesis
        .trust_store()
        .map_err(|e| config_err("rpc.tls_cert", format!("the genesis organizations: {e}")))?;
    if trust.is_empty() {
        return Err(config_err(
            "rpc.tls_cert",
            "the genesis lists no organizations, so no client could be trusted".into(),
        ));
    }
    let config = crate::rpc::auth::server_config(&cert, &key, &trust)
        .map_err(|e| config_err("rpc.tls_cert", e.to_string()))?;
    let org = genesis.organization_of(node).map(|o| o.name.clone());
    // What the API depends on and expires: the node's certificate and its
    // organization's CA. Measured, and logged now and twice a day.
    let mut certificates = Vec::new();
    if let Ok(info) =
        crate::pki::certs_from_pem(&cert, "node").and_then(|c| crate::pki::describe(&c[0]))
    {
        certificates.push(("node", info));
    }
    if let Some(o) = genesis.organization_of(node) {
        if let Ok(info) =
            crate::pki::certs_from_pem(&o.ca_cert, "ca").and_then(|c| crate::pki::describe(&c[0]))
        {
            certificates.push(("org_ca", info));
        }
    }
    for (which, c) in &certificates {
        metrics.set_cert_expiry(which, c.not_after);
    }
    log_cert_expiry(&certificates);
    let watched = certificates.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(12 * 3600));
        every.tick().await;
        loop {
            every.tick().await;
            log_cert_expiry(&watched);
        }
    });
    info!(organization = ?org, "the API serves TLS; callers need a certificate of a consortium organization");
    let security = crate::rpc::Security::Tls {
        config: Arc::new(config),
        policy: Arc::new(
            crate::rpc::auth::AuthPolicy::new(trust, org, metrics.clone())
                .with_quotas(crate::rpc::quota::Quotas::new(cfg.rpc.quota)),
        ),
    };
    Ok((security, certificates))
}

/// Days below which a certificate's coming expiry is logged as a warning.
const CERT_WARN_DAYS: i64 = 30;

/// Logs how many days each certificate has left: a warning under
/// [`CERT_WARN_DAYS`], an error once expired (clients then refuse the node).
fn log_cert_expiry(certs: &[(&'static str, crate::pki::CertInfo)]) {
    let now = std::time::SystemTime::now();
    for (which, c) in certs {
        let days = c.days_left(now);
        if days < 0 {
            tracing::error!(
                certificate = which,
                days,
                "TLS certificate expired: renew it"
            );
        } else if days < CERT_WARN_DAYS {
            warn!(
                certificate = which,
                days, "TLS certificate expires soon: renew it"
            );
        } else {
            info!(certificate = which, days, "TLS certificate valid");
        }
    }
}

/// TLS to the state-sync servers, if configured.
fn sync_tls(home: &Home, cfg: &NodeConfig) -> Result<Option<crate::pki::ClientTls>, NodeError> {
    if cfg.sync.tls_ca.is_empty() {
        return Ok(None);
    }
    let cert = (!cfg.sync.tls_cert.is_empty()).then(|| in_home(home, &cfg.sync.tls_cert));
    let key = (!cfg.sync.tls_key.is_empty()).then(|| in_home(home, &cfg.sync.tls_key));
    crate::pki::ClientTls::load(
        &in_home(home, &cfg.sync.tls_ca),
        cert.as_deref(),
        key.as_deref(),
    )
    .map(Some)
    .map_err(|e| {
        NodeError::Config(crate::config::ConfigError::invalid(
            &home.config(),
            "sync.tls_ca",
            e.to_string(),
        ))
    })
}

/// Options of one run that override the configuration file.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Force state sync on (or off) for this run.
    pub state_sync: Option<bool>,
}

/// Opens the node in `home` and starts it.
pub async fn start(home: &Home) -> Result<NodeHandle, NodeError> {
    start_with(home, StartOptions::default()).await
}

/// Opens the node in `home` and starts it, with overrides.
pub async fn start_with(home: &Home, opts: StartOptions) -> Result<NodeHandle, NodeError> {
    let mut cfg = NodeConfig::load(&home.config())?;
    if let Some(s) = opts.state_sync {
        cfg.sync.state_sync = s;
        cfg.validate(&home.config())?;
    }
    let genesis = Genesis::load(&home.genesis())?;
    let key = read_key(&home.node_key())?;
    let config_path = home.config();
    let peers = cfg.peer_specs(&config_path)?;
    let members = cfg.member_keys(&config_path)?;
    let set = Arc::new(
        genesis
            .validator_set()
            .map_err(|e| NodeError::Inconsistent(e.to_string()))?,
    );
    let is_validator = set.get(&key.public()).is_some();

    // Storage and the signing state. A corrupt signing state stops the node:
    // better not to run than to risk a double sign.
    std::fs::create_dir_all(home.data())
        .map_err(|e| NodeError::Config(crate::config::ConfigError::io(&home.data(), e)))?;
    let options = crate::storage::SledOptions {
        cache_capacity_bytes: cfg.storage.cache_mb * 1024 * 1024,
        ..Default::default()
    };
    let sled = SledStore::open_with(&home.data().join("db"), &options)?;
    let state_backend = sled.state_backend();
    let store: Arc<dyn Store> = Arc::new(sled);
    let signing = SigningStateFile::new(home.signing_state());
    let persisted = signing.load().map_err(NodeError::SigningState)?;

    let metrics = Arc::new(NodeMetrics::default());
    let mut status = NodeStatus::new(
        genesis.chain_id.clone(),
        cfg.moniker.clone(),
        key.public(),
        is_validator,
    );
    let (status_tx, status_rx) = watch::channel(status.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // The API comes up first, so that an operator can watch a long sync; the
    // services that need synced state answer UNAVAILABLE until then.
    let grpc_listener = bind_tcp(&cfg.rpc.listen, "gRPC").await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| NodeError::Listen {
            what: "gRPC",
            addr: cfg.rpc.listen.clone(),
            source,
        })?;
    let tx_api = crate::rpc::TxApi::new();
    let query_api = crate::rpc::QueryApi::new();
    let (security, certificates) = rpc_security(home, &cfg, &genesis, &key.public(), &metrics)?;
    let operator = crate::rpc::OperatorInfo {
        organization: genesis
            .organization_of(&key.public())
            .map(|o| o.name.clone()),
        started_at_ms: now_ms().0,
        config_toml: toml::to_string(&cfg).unwrap_or_default(),
        data_dir: home.data(),
        certificates,
    };
    let services = crate::rpc::Services {
        node: crate::rpc::NodeApi::new(status_rx.clone(), store.clone(), set.clone())
            .with_operator_info(operator),
        tx: tx_api.clone(),
        query: query_api.clone(),
        sync: crate::rpc::SyncApi::new(store.clone()),
    };
    let mut rpc_shutdown = shutdown_rx.clone();
    // On a runtime of its own: no client work runs on this runtime's threads,
    // which run consensus.
    let rpc_server = crate::rpc::spawn(
        grpc_listener,
        services,
        crate::rpc::Limits::from_config(&cfg.rpc),
        security,
        async move {
            let _ = rpc_shutdown.wait_for(|s| *s).await;
        },
    )
    .map_err(NodeError::Server)?;
    let metrics_cell: Arc<std::sync::OnceLock<Network>> = Arc::new(std::sync::OnceLock::new());
    let mut metrics_addr = None;
    let mut metrics_task = None;
    if !cfg.metrics.listen.is_empty() {
        let l = bind_tcp(&cfg.metrics.listen, "metrics").await?;
        metrics_addr = l.local_addr().ok();
        let m = metrics.clone();
        let n = metrics_cell.clone();
        let render = Arc::new(move || {
            let mut r = Renderer::default();
            m.render_into(&mut r);
            crate::metrics::process::render_into(&mut r);
            if let Some(n) = n.get() {
                render_net_stats(&n.stats(), &mut r);
            }
            r.finish()
        });
        metrics_task = Some(tokio::spawn(crate::metrics::serve(l, render)));
    }

    // State sync, for a node with no history, or one that was interrupted
    // (resumed whatever the configuration says now: its state is half written).
    let mut restored = None;
    let resuming = crate::sync::state_sync::in_progress(store.as_ref())?;
    if resuming || (cfg.sync.state_sync && store.latest_height().0 == 0) {
        status.sync_phase = SyncPhase::StateSync;
        let _ = status_tx.send(status.clone());
        let progress = Arc::new(crate::sync::progress::Progress::new(metrics.clone()));
        let sync_cfg = crate::sync::state_sync::StateSyncConfig {
            chain_id: genesis.chain_id.clone(),
            validators: (*set).clone(),
            servers: cfg.sync.rpc_servers.clone(),
            fetchers_per_server: cfg.sync.fetchers_per_peer,
            chunks_in_flight: cfg.sync.max_chunks_in_flight,
            tls: sync_tls(home, &cfg)?,
        };
        let sync_store = crate::sync::state_sync::SyncStore {
            blocks: store.clone(),
            meta: store.clone(),
        };
        let sync =
            crate::sync::state_sync::run(&sync_cfg, sync_store, state_backend.clone(), progress);
        let mut stop = shutdown_rx.clone();
        tokio::select! {
            r = sync => {
                let outcome = r?;
                if let crate::sync::state_sync::Outcome::Restored(state) = outcome {
                    restored = Some(*state);
                }
            }
            _ = stop.wait_for(|s| *s) => {
                return Err(NodeError::Inconsistent("stopped during state sync".into()));
            }
        }
        status.sync_phase = SyncPhase::BlockSync;
    }

    let ledger = match restored {
        Some(state) => Ledger::with_state(&genesis.chain_id, state, &genesis.accounts)?,
        None => Ledger::open(&genesis.chain_id, state_backend, &genesis.accounts)?,
    };
    let app: Arc<dyn Application> = Arc::new(ledger);
    replay_app(store.as_ref(), app.as_ref())?;
    store.index_missing_txs()?;
    store.index_missing_evidence()?;

    let mut permitted: HashSet<PublicKey> = set.validators().iter().map(|v| v.public_key).collect();
    // Member nodes are the organizations' (genesis); `p2p.members` of the
    // config still adds keys, for chains whose genesis lists none.
    permitted.extend(genesis.member_keys());
    permitted.extend(members);
    let p2p_listen: SocketAddr = cfg
        .p2p
        .listen
        .parse()
        .map_err(|source| NodeError::ListenAddress { source })?;
    let (net, events) = Network::start(NetConfig {
        listen: p2p_listen,
        key: key.clone(),
        permitted,
        peers: peers
            .into_iter()
            .filter(|p| p.key != key.public())
            .map(|p| PeerAddr {
                key: p.key,
                addr: p.addr,
            })
            .collect(),
        max_frame: Default::default(),
        queue_len: cfg.p2p.queue_len,
    })
    .await
    .map_err(NodeError::Net)?;
    let _ = metrics_cell.set(net.clone());

    let latest = store.latest_height();
    let last_block_time = match store.block(latest)? {
        Some(b) => b.header.time,
        None => genesis.genesis_time(),
    };
    status.height = latest;
    status.latest_block_time = if latest.0 == 0 {
        Timestamp(0)
    } else {
        last_block_time
    };
    status.latest_block_hash = store.block_id(latest)?;
    let _ = status_tx.send(status.clone());

    let rules = blocks::BlockRules::new(
        genesis.chain_id.clone(),
        set.clone(),
        genesis.genesis_time(),
        cfg.consensus.max_block_bytes,
        cfg.consensus.max_block_txs,
        store.clone(),
        app.clone(),
    );
    let core = Consensus::new(
        Params {
            chain_id: genesis.chain_id.clone(),
            validators: (*set).clone(),
            key: Some(key.clone()),
            timeouts: cfg.consensus.timeouts(),
        },
        persisted,
    );
    let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
    let notifier = Arc::new(notify::CommitNotifier::new(latest));
    let (gossip_tx, gossip_rx) = mpsc::channel(GOSSIP_QUEUE);
    let txpool = Arc::new(txpool::TxPool::new(
        cfg.mempool.limits(),
        app.clone(),
        gossip_tx,
        notifier.clone(),
        metrics.clone(),
    ));
    let gossip_task = tokio::spawn(gossip_txs(gossip_rx, net.clone()));
    let (bad_tx_tx, bad_tx_rx) = mpsc::unbounded_channel();
    let snapshot_store: Arc<dyn crate::storage::SnapshotStore> = store.clone();
    let snapshotter = Arc::new(crate::sync::snapshotter::Snapshotter::new(
        app.clone(),
        snapshot_store,
        crate::sync::snapshotter::SnapshotPolicy {
            interval: cfg.sync.snapshot_interval,
            keep: cfg.sync.snapshot_keep,
            chunk_bytes: cfg.sync.chunk_bytes,
        },
    ));
    #[cfg(feature = "faults")]
    let faults = crate::faults::Faults::from_env();
    #[cfg(not(feature = "faults"))]
    crate::faults::report_unavailable();
    let mut actor = actor::Actor {
        core,
        rules,
        store: store.clone(),
        app: app.clone(),
        signing,
        net: net.clone(),
        metrics: metrics.clone(),
        status_tx,
        status,
        cfg: actor::ActorConfig {
            commit_delay: Duration::from_millis(cfg.consensus.commit_delay_ms),
            create_empty_blocks: cfg.consensus.create_empty_blocks,
            empty_block_interval: Duration::from_millis(cfg.consensus.empty_block_interval_ms),
            gossip_interval: Duration::from_millis(cfg.p2p.gossip_interval_ms),
            keep_recent_blocks: cfg.storage.keep_recent_blocks,
        },
        timers: Default::default(),
        pending: VecDeque::new(),
        jobs_tx,
        jobs_rx,
        execs: HashMap::new(),
        jobs_in_flight: HashMap::new(),
        deferred_timeouts: Vec::new(),
        evidence_pool: Default::default(),
        peers: HashMap::new(),
        catchup: Default::default(),
        block_server: block_server::BlockServer::start(store.clone(), net.clone()),
        last_block_time,
        last_commit_at: tokio::time::Instant::now(),
        decided_round: None,
        waiting_start: None,
        txpool: txpool.clone(),
        admissions: Arc::new(tokio::sync::Semaphore::new(actor::MAX_ADMISSION_JOBS)),
        bad_tx_tx,
        bad_tx_rx,
        snapshotter,
        #[cfg(feature = "faults")]
        fault_key: faults.signs_outside_the_core().then(|| key.clone()),
        #[cfg(feature = "faults")]
        faults,
        #[cfg(feature = "faults")]
        fault_tick: 0,
    };
    metrics.height.set(latest.0 as i64);
    // Resume: start the next height, then replay what the WAL kept of it.
    let next = latest.next();
    actor.pending.push_back(Input::StartHeight {
        height: next,
        last_block_time,
    });
    let wal = store.wal_entries(next)?;
    if !wal.is_empty() {
        info!(height = %next, entries = wal.len(), "replaying the consensus WAL");
    }
    for entry in wal {
        actor.pending.push_back(match entry {
            WalEntry::Vote(v) => Input::Vote(v),
            WalEntry::Proposal { proposal, block } => Input::Proposal {
                proposal,
                block: Arc::new(block),
            },
        });
    }
    tx_api.ready(txpool.clone(), store.clone());
    query_api.ready(app.clone(), store.clone());

    info!(
        chain = %genesis.chain_id,
        node = %key.public(),
        validator = is_validator,
        height = %latest,
        p2p = %net.local_addr(),
        grpc = %grpc_addr,
        "node started"
    );

    let p2p_addr = net.local_addr();
    let actor_shutdown = shutdown_rx.clone();
    let shutdown_for_task = shutdown_tx.clone();
    let task = tokio::spawn(async move {
        let result = actor.run(events, actor_shutdown).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "node stopping on a fatal error");
        }
        let _ = shutdown_for_task.send(true);
        net.shutdown().await;
        if let Err(e) = rpc_server.wait().await {
            warn!(error = %e, "gRPC server error");
        }
        if let Some(t) = metrics_task {
            t.abort();
        }
        gossip_task.abort();
        info!("node stopped");
        result
    });

    Ok(NodeHandle {
        p2p_addr,
        grpc_addr,
        metrics_addr,
        node_key: key.public(),
        status: status_rx,
        shutdown: shutdown_tx,
        task,
    })
}
