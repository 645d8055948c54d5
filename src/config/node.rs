//! The node configuration file (`config.toml`), with documented defaults. `consort
//! init` writes it with a comment on every field ([`NodeConfig::to_commented_toml`]).

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::types::PublicKey;

/// A persistent peer: `<hex public key>@<host>:<port>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer's node key.
    pub key: PublicKey,
    /// Host and port, resolved at each dial (so container names work).
    pub addr: String,
}

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PeerSpec, String> {
        let (key, addr) = s
            .split_once('@')
            .ok_or_else(|| format!("{s:?} is not of the form <public key>@<host>:<port>"))?;
        let key = key
            .parse::<PublicKey>()
            .map_err(|e| format!("{s:?}: bad public key: {e}"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: address has no port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("{s:?}: address must be <host>:<port>"));
        }
        Ok(PeerSpec {
            key,
            addr: addr.to_string(),
        })
    }
}

impl std::fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.key, self.addr)
    }
}

/// Peer-to-peer (QUIC) settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// UDP address to listen on.
    pub listen: String,
    /// Persistent peers, `<public key>@<host>:<port>`.
    pub peers: Vec<String>,
    /// Node keys of member (non-validator) nodes allowed to connect.
    pub members: Vec<String>,
    /// Outbound queue per peer and channel, in messages.
    pub queue_len: usize,
    /// Interval between round-status announcements to peers, in ms.
    pub gossip_interval_ms: u64,
}

impl Default for P2pConfig {
    fn default() -> P2pConfig {
        P2pConfig {
            listen: "0.0.0.0:26656".into(),
            peers: vec![],
            members: vec![],
            queue_len: 1024,
            gossip_interval_ms: 100,
        }
    }
}

/// gRPC API settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// TCP address of the gRPC server.
    pub listen: String,
    /// Largest request accepted, in bytes.
    pub max_request_bytes: usize,
    /// Client connections open at once, over all clients; more are closed.
    pub max_connections: usize,
    /// Client connections open at once from one IP address; more are closed.
    pub max_connections_per_address: usize,
    /// Streaming calls (subscriptions, block ranges, submit streams) open at
    /// once from one IP address; more are refused with RESOURCE_EXHAUSTED.
    pub max_streams_per_address: usize,
    /// The node's TLS certificate (PEM, issued by its organization's CA),
    /// relative to the home (`consort init` writes one); empty serves
    /// plaintext.
    pub tls_cert: String,
    /// Its private key (PEM), relative to the home.
    pub tls_key: String,
    /// Serve plaintext on an address that is not loopback (with a warning at
    /// every start). Without it such a node refuses to start.
    pub insecure: bool,
    /// What one certificate may use, by role (TLS only).
    pub quota: QuotaConfig,
}

/// What one certificate of a role may use of the API.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleQuota {
    /// Calls per second (a stream counts once, when it opens).
    pub requests_per_sec: u32,
    /// Streaming calls open at once.
    pub streams: u32,
    /// Bytes of transactions submitted per second.
    pub submit_bytes_per_sec: u64,
}

/// Quotas per role.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Applications.
    pub client: RoleQuota,
    /// Member nodes.
    pub member: RoleQuota,
    /// Nodes.
    pub node: RoleQuota,
    /// Operators.
    pub admin: RoleQuota,
}

impl Default for QuotaConfig {
    fn default() -> QuotaConfig {
        // Far above one application's honest use (a stream of submissions
        // is one request); what they bound is one certificate taking the
        // node from everyone else.
        let q = RoleQuota {
            requests_per_sec: 5_000,
            streams: 32,
            submit_bytes_per_sec: 32 * 1024 * 1024,
        };
        QuotaConfig {
            client: q,
            member: q,
            node: q,
            admin: q,
        }
    }
}

impl Default for RpcConfig {
    fn default() -> RpcConfig {
        RpcConfig {
            listen: "0.0.0.0:26657".into(),
            max_request_bytes: 4 * 1024 * 1024,
            max_connections: 256,
            max_connections_per_address: 16,
            max_streams_per_address: 32,
            tls_cert: "tls/node.pem".into(),
            tls_key: "tls/node.key".into(),
            insecure: false,
            quota: QuotaConfig::default(),
        }
    }
}

/// Whether `addr` (`ip:port`) binds a loopback address only.
pub fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

/// Prometheus metrics settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// TCP address serving `/metrics`; empty disables it.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig {
            listen: "0.0.0.0:26660".into(),
        }
    }
}

/// Consensus timing and block building.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusConfig {
    /// Propose timeout in round 0, ms.
    pub timeout_propose_ms: u64,
    /// Added to the propose timeout per round, ms.
    pub timeout_propose_delta_ms: u64,
    /// Prevote timeout in round 0, ms.
    pub timeout_prevote_ms: u64,
    /// Added to the prevote timeout per round, ms.
    pub timeout_prevote_delta_ms: u64,
    /// Precommit timeout in round 0, ms.
    pub timeout_precommit_ms: u64,
    /// Added to the precommit timeout per round, ms.
    pub timeout_precommit_delta_ms: u64,
    /// Wait after a decision before starting the next height, ms.
    pub commit_delay_ms: u64,
    /// Produce blocks without transactions.
    pub create_empty_blocks: bool,
    /// When empty blocks are produced: at most one every this many ms (0 = as fast
    /// as consensus goes). Without empty blocks, a height starts when a
    /// transaction waits.
    pub empty_block_interval_ms: u64,
    /// Largest total transaction bytes in a block.
    pub max_block_bytes: usize,
    /// Most transactions in a block.
    pub max_block_txs: usize,
}

impl Default for ConsensusConfig {
    fn default() -> ConsensusConfig {
        ConsensusConfig {
            timeout_propose_ms: 1000,
            timeout_propose_delta_ms: 500,
            timeout_prevote_ms: 500,
            timeout_prevote_delta_ms: 250,
            timeout_precommit_ms: 500,
            timeout_precommit_delta_ms: 250,
            commit_delay_ms: 200,
            create_empty_blocks: true,
            empty_block_interval_ms: 0,
            max_block_bytes: 4 * 1024 * 1024,
            max_block_txs: 20_000,
        }
    }
}

impl ConsensusConfig {
    /// The core's timeouts.
    pub fn timeouts(&self) -> crate::consensus::Timeouts {
        use std::time::Duration;
        let st = |base: u64, delta: u64| crate::consensus::StepTimeout {
            base: Duration::from_millis(base),
            delta: Duration::from_millis(delta),
        };
        crate::consensus::Timeouts {
            propose: st(self.timeout_propose_ms, self.timeout_propose_delta_ms),
            prevote: st(self.timeout_prevote_ms, self.timeout_prevote_delta_ms),
            precommit: st(self.timeout_precommit_ms, self.timeout_precommit_delta_ms),
        }
    }

    /// Minimal timeouts for a local network (benchmarks, tests).
    pub fn fast() -> ConsensusConfig {
        ConsensusConfig {
            timeout_propose_ms: 300,
            timeout_propose_delta_ms: 100,
            timeout_prevote_ms: 100,
            timeout_prevote_delta_ms: 50,
            timeout_precommit_ms: 100,
            timeout_precommit_delta_ms: 50,
            commit_delay_ms: 0,
            ..ConsensusConfig::default()
        }
    }
}

/// Mempool settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    /// Most transactions waiting.
    pub max_txs: usize,
    /// Most bytes waiting.
    pub max_bytes: usize,
    /// Recently committed transaction hashes remembered to refuse duplicates.
    pub recent_cache: usize,
}

impl Default for MempoolConfig {
    fn default() -> MempoolConfig {
        let d = crate::mempool::MempoolConfig::default();
        MempoolConfig {
            max_txs: d.max_txs,
            max_bytes: d.max_bytes,
            recent_cache: d.recent_cache,
        }
    }
}

impl MempoolConfig {
    /// The pool's limits.
    pub fn limits(&self) -> crate::mempool::MempoolConfig {
        crate::mempool::MempoolConfig {
            max_txs: self.max_txs,
            max_bytes: self.max_bytes,
            recent_cache: self.recent_cache,
        }
    }
}

/// Snapshot and state-sync settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Take a snapshot of the state every this many blocks (0 disables).
    pub snapshot_interval: u64,
    /// Snapshots kept.
    pub snapshot_keep: usize,
    /// Target size of a snapshot chunk, in bytes.
    pub chunk_bytes: usize,
    /// Restore the state from a peer's snapshot when starting with no blocks.
    pub state_sync: bool,
    /// gRPC addresses (host:port) of nodes to fetch snapshots and blocks from.
    pub rpc_servers: Vec<String>,
    /// Chunks fetched in parallel per peer.
    pub fetchers_per_peer: usize,
    /// Most chunks held at once while restoring (fetched, being checked or
    /// written), whatever the number of peers: each costs about three times
    /// its size in memory until it is written.
    pub max_chunks_in_flight: usize,
    /// CA bundle (PEM) to check the servers' certificates against, relative
    /// to the home; empty reaches the servers in plaintext.
    pub tls_ca: String,
    /// The certificate this node presents to the servers (role member, node
    /// or admin), relative to the home.
    pub tls_cert: String,
    /// Its private key, relative to the home.
    pub tls_key: String,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            snapshot_interval: 1000,
            snapshot_keep: 2,
            chunk_bytes: 4 * 1024 * 1024,
            state_sync: false,
            rpc_servers: vec![],
            fetchers_per_peer: 2,
            max_chunks_in_flight: 3,
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

/// Storage settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Keep only this many recent blocks (0 keeps all).
    pub keep_recent_blocks: u64,
    /// MiB of sled's cache for each of the node's three databases (block
    /// log, state, snapshots), and how much each may write before it is
    /// closed and reopened to release what sled keeps of its writes. Most of
    /// a node's memory: the rest is the mempool, the state tree's leaves (64
    /// bytes per entry) and buffers.
    pub cache_mb: usize,
}

/// Default MiB of sled cache per database.
pub const DEFAULT_CACHE_MB: usize = 32;

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            keep_recent_blocks: 0,
            cache_mb: DEFAULT_CACHE_MB,
        }
    }
}

/// Logging settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `RUST_LOG` syntax; `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// The whole node configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's name in logs and status.
    pub moniker: String,
    /// Peer-to-peer settings.
    pub p2p: P2pConfig,
    /// gRPC settings.
    pub rpc: RpcConfig,
    /// Metrics settings.
    pub metrics: MetricsConfig,
    /// Consensus settings.
    pub consensus: ConsensusConfig,
    /// Mempool settings.
    pub mempool: MempoolConfig,
    /// Snapshot and state-sync settings.
    pub sync: SyncConfig,
    /// Storage settings.
    pub storage: StorageConfig,
    /// Logging settings.
    pub log: LogConfig,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            moniker: "node".into(),
            p2p: P2pConfig::default(),
            rpc: RpcConfig::default(),
            metrics: MetricsConfig::default(),
            consensus: ConsensusConfig::default(),
            mempool: MempoolConfig::default(),
            sync: SyncConfig::default(),
            storage: StorageConfig::default(),
            log: LogConfig::default(),
        }
    }
}

fn check_addr(path: &Path, field: &str, v: &str) -> Result<(), ConfigError> {
    v.parse::<SocketAddr>()
        .map(|_| ())
        .map_err(|e| ConfigError::invalid(path, field, format!("{v:?}: {e}")))
}

impl NodeConfig {
    /// Reads and validates `config.toml`.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        let cfg: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks values the type system does not.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        check_addr(path, "p2p.listen", &self.p2p.listen)?;
        check_addr(path, "rpc.listen", &self.rpc.listen)?;
        for (role, q) in [
            ("client", &self.rpc.quota.client),
            ("member", &self.rpc.quota.member),
            ("node", &self.rpc.quota.node),
            ("admin", &self.rpc.quota.admin),
        ] {
            if q.requests_per_sec == 0 || q.streams == 0 || q.submit_bytes_per_sec == 0 {
                return Err(ConfigError::invalid(
                    path,
                    format!("rpc.quota.{role}"),
                    "every quota must be at least 1",
                ));
            }
        }
        if self.rpc.tls_cert.is_empty() != self.rpc.tls_key.is_empty() {
            return Err(ConfigError::invalid(
                path,
                "rpc.tls_key",
                "tls_cert and tls_key go together",
            ));
        }
        if !self.sync.tls_cert.is_empty() && self.sync.tls_ca.is_empty() {
            return Err(ConfigError::invalid(
                path,
                "sync.tls_ca",
                "a client certificate needs the CA bundle to check the servers by",
            ));
        }
        if self.sync.tls_cert.is_empty() != self.sync.tls_key.is_empty() {
            return Err(ConfigError::invalid(
                path,
                "sync.tls_key",
                "tls_cert and tls_key go together",
            ));
        }
        if self.rpc.tls_cert.is_empty() && !self.rpc.insecure && !is_loopback(&self.rpc.listen) {
            return Err(ConfigError::invalid(
                path,
                "rpc.listen",
                format!(
                    "{} is not a loopback address and the API has no TLS: set rpc.tls_cert and \
                     rpc.tls_key (a certificate of this node's organization), or rpc.insecure = \
                     true to serve plaintext anyway",
                    self.rpc.listen
                ),
            ));
        }
        if !self.metrics.listen.is_empty() {
            check_addr(path, "metrics.listen", &self.metrics.listen)?;
        }
        self.peer_specs(path)?;
        self.member_keys(path)?;
        if self.p2p.queue_len == 0 {
            return Err(ConfigError::invalid(
                path,
                "p2p.queue_len",
                "must be at least 1",
            ));
        }
        if self.p2p.gossip_interval_ms == 0 {
            return Err(ConfigError::invalid(
                path,
                "p2p.gossip_interval_ms",
                "must be at least 1",
            ));
        }
        if self.consensus.timeout_propose_ms == 0
            || self.consensus.timeout_prevote_ms == 0
            || self.consensus.timeout_precommit_ms == 0
        {
            return Err(ConfigError::invalid(
                path,
                "consensus.timeout_*_ms",
                "timeouts must be at least 1 ms",
            ));
        }
        if self.storage.cache_mb == 0 || self.storage.cache_mb > 1 << 20 {
            return Err(ConfigError::invalid(
                path,
                "storage.cache_mb",
                "must be between 1 and 1048576 (MiB per database)",
            ));
        }
        if self.consensus.max_block_bytes == 0 || self.consensus.max_block_txs == 0 {
            return Err(ConfigError::invalid(
                path,
                "consensus.max_block_*",
                "must be at least 1",
            ));
        }
        for (field, v) in [
            ("rpc.max_connections", self.rpc.max_connections),
            (
                "rpc.max_connections_per_address",
                self.rpc.max_connections_per_address,
            ),
            (
                "rpc.max_streams_per_address",
                self.rpc.max_streams_per_address,
            ),
        ] {
            // The connection limit is a semaphore's permit count.
            if v == 0 || v > 1 << 20 {
                return Err(ConfigError::invalid(
                    path,
                    field,
                    "must be between 1 and 1048576",
                ));
            }
        }
        if self.rpc.max_request_bytes < 1024 {
            return Err(ConfigError::invalid(
                path,
                "rpc.max_request_bytes",
                "must be at least 1024",
            ));
        }
        if self.storage.keep_recent_blocks != 0 && self.storage.keep_recent_blocks < 500 {
            return Err(ConfigError::invalid(
                path,
                "storage.keep_recent_blocks",
                "must be 0 (keep all) or at least 500: the state is rebuilt from recent blocks after a crash",
            ));
        }
        if self.mempool.max_txs == 0 || self.mempool.max_bytes == 0 {
            return Err(ConfigError::invalid(
                path,
                "mempool.max_*",
                "must be at least 1",
            ));
        }
        if self.sync.snapshot_keep == 0 {
            return Err(ConfigError::invalid(
                path,
                "sync.snapshot_keep",
                "must be at least 1",
            ));
        }
        if self.sync.chunk_bytes < 1024 || self.sync.chunk_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError::invalid(
                path,
                "sync.chunk_bytes",
                "must be between 1 KiB and 16 MiB",
            ));
        }
        if self.sync.max_chunks_in_flight == 0 {
            return Err(ConfigError::invalid(
                path,
                "sync.max_chunks_in_flight",
                "must be at least 1",
            ));
        }
        if self.sync.fetchers_per_peer == 0 {
            return Err(ConfigError::invalid(
                path,
                "sync.fetchers_per_peer",
                "must be at least 1",
            ));
        }
        if self.sync.state_sync && self.sync.rpc_servers.is_empty() {
            return Err(ConfigError::invalid(
                path,
                "sync.rpc_servers",
                "state sync needs at least one server",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::invalid(
                path,
                "log.format",
                "must be \"text\" or \"json\"",
            ));
        }
        Ok(())
    }

    /// Parsed persistent peers.
    pub fn peer_specs(&self, path: &Path) -> Result<Vec<PeerSpec>, ConfigError> {
        self.p2p
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse()
                    .map_err(|e| ConfigError::invalid(path, format!("p2p.peers[{i}]"), e))
            })
            .collect()
    }

    /// Whether the API serves plaintext on a non-loopback address.
    pub fn rpc_is_insecure(&self) -> bool {
        self.rpc.tls_cert.is_empty() && !is_loopback(&self.rpc.listen)
    }

    /// Parsed member node keys.
    pub fn member_keys(&self, path: &Path) -> Result<Vec<PublicKey>, ConfigError> {
        self.p2p
            .members
            .iter()
            .enumerate()
            .map(|(i, k)| {
                k.parse().map_err(|e: crate::types::TypesError| {
                    ConfigError::invalid(path, format!("p2p.members[{i}]"), e.to_string())
                })
            })
            .collect()
    }

    /// The configuration as TOML with a comment on every field, as `init` writes it.
    pub fn to_commented_toml(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "[]".to_string()
            } else {
                let items: Vec<String> = v.iter().map(|s| format!("  {s:?},")).collect();
                format!("[\n{}\n]", items.join("\n"))
            }
        };
        let quota = |q: &RoleQuota| {
            format!(
                "{{ requests_per_sec = {}, streams = {}, submit_bytes_per_sec = {} }}",
                q.requests_per_sec, q.streams, q.submit_bytes_per_sec
            )
        };
        let c = &self.consensus;
        format!(
            r#"# consort node configuration. Every field is optional; the value shown is
# what the node uses (the default unless changed).

# Name of this node in logs and status.
moniker = {moniker:?}

[p2p]
# UDP address for QUIC connections to peers.
listen = {p2p_listen:?}
# Persistent peers, "<hex node key>@<host>:<port>". The node dials them and keeps
# redialling with backoff. Host names are resolved at each dial.
peers = {peers}
# Node keys (hex) of member nodes that are not validators but may connect
# (validators of the genesis are always permitted). Any other key is refused
# during the TLS handshake.
members = {members}
# Outbound queue per peer and channel, in messages; a full queue drops (gossip
# re-sends what matters).
queue_len = {queue_len}
# How often the node tells its peers its height, round and step (ms), so that
# they re-send what it misses.
gossip_interval_ms = {gossip}

[rpc]
# TCP address of the gRPC API (node, transactions, queries, sync; health and
# reflection included).
listen = {rpc_listen:?}
# Largest gRPC request accepted, in bytes.
max_request_bytes = {max_req}
# Client connections open at once, over all clients; a connection beyond is
# closed as soon as it is accepted, and logged with its address.
max_connections = {max_conns}
# Client connections open at once from one IP address, so that one client
# cannot take the slots of all others; beyond, closed and logged likewise.
# Clients behind one proxy or NAT share an address: raise it for them.
max_connections_per_address = {max_conns_addr}
# Streaming calls (block and result subscriptions, block ranges, submit
# streams) open at once from one IP address; beyond, RESOURCE_EXHAUSTED.
max_streams_per_address = {max_streams_addr}
# TLS 1.3: this node's certificate and key (PEM, issued by its organization's
# CA; paths relative to the home). Clients then need a certificate of an
# organization of the genesis, and a role that may call the method. "" serves
# plaintext, which a node accepts only on a loopback address...
tls_cert = {tls_cert:?}
tls_key = {tls_key:?}
# ...unless this is true (every start then logs a warning).
insecure = {insecure}

# What one client certificate may use, by its role: calls per second (a
# stream counts once), streaming calls open at once, bytes of transactions
# submitted per second. Beyond, RESOURCE_EXHAUSTED. (TLS only.)
[rpc.quota]
client = {q_client}
member = {q_member}
node = {q_node}
admin = {q_admin}

[metrics]
# TCP address serving Prometheus metrics at /metrics; "" disables it.
listen = {metrics_listen:?}

[consensus]
# Timeouts in ms: base in round 0, plus delta per further round, so they grow
# until they exceed the real network delay.
timeout_propose_ms = {tp}
timeout_propose_delta_ms = {tpd}
timeout_prevote_ms = {tv}
timeout_prevote_delta_ms = {tvd}
timeout_precommit_ms = {tc}
timeout_precommit_delta_ms = {tcd}
# Wait after a block is decided before the next height starts (ms): late
# precommits and new transactions arrive meanwhile.
commit_delay_ms = {commit_delay}
# Produce blocks with no transactions. When false, a height starts only when a
# transaction waits in the mempool.
create_empty_blocks = {empty}
# At most one empty block every this many ms (0 = no extra wait).
empty_block_interval_ms = {empty_interval}
# Largest total size of the transactions of a block, in bytes.
max_block_bytes = {max_block_bytes}
# Most transactions in a block.
max_block_txs = {max_block_txs}

[mempool]
# Most transactions waiting; a full pool refuses new ones (RESOURCE_EXHAUSTED).
max_txs = {mp_txs}
# Most bytes waiting.
max_bytes = {mp_bytes}
# Recently committed transaction hashes remembered, to refuse resubmissions.
recent_cache = {mp_recent}

[sync]
# Take a snapshot of the state every this many blocks (0 disables); peers
# joining by state sync fetch them.
snapshot_interval = {snap_interval}
# Snapshots kept.
snapshot_keep = {snap_keep}
# Target size of a snapshot chunk, in bytes.
chunk_bytes = {chunk_bytes}
# Restore the state from a peer's snapshot when this node starts with no blocks
# (`consort start --state-sync` sets it for one run).
state_sync = {state_sync}
# gRPC addresses (host:port) of nodes to fetch snapshots and blocks from.
rpc_servers = {rpc_servers}
# Chunks fetched in parallel from each server.
fetchers_per_peer = {fetchers}
# Most chunks held at once while restoring, over all servers (each costs about
# three times chunk_bytes of memory until it is written).
max_chunks_in_flight = {chunks_in_flight}
# TLS to the servers: the CA bundle to check them by, and the certificate and
# key (role member) this node presents; paths relative to the home. "" for
# plaintext servers.
tls_ca = {sync_ca:?}
tls_cert = {sync_cert:?}
tls_key = {sync_key:?}

[storage]
# Keep only this many recent blocks (0 keeps every block). Snapshots are kept.
keep_recent_blocks = {keep}
# MiB of cache for each of the three databases (block log, state,
# snapshots): most of the node's memory.
cache_mb = {cache_mb}

[log]
# Log filter in RUST_LOG syntax ("info", "consort=debug,info"); the RUST_LOG
# environment variable overrides it.
level = {level:?}
# "text" for people, "json" for log collectors.
format = {format:?}
"#,
            moniker = self.moniker,
            p2p_listen = self.p2p.listen,
            peers = list(&self.p2p.peers),
            members = list(&self.p2p.members),
            queue_len = self.p2p.queue_len,
            gossip = self.p2p.gossip_interval_ms,
            rpc_listen = self.rpc.listen,
            max_req = self.rpc.max_request_bytes,
            max_conns = self.rpc.max_connections,
            max_conns_addr = self.rpc.max_connections_per_address,
            max_streams_addr = self.rpc.max_streams_per_address,
            tls_cert = self.rpc.tls_cert,
            tls_key = self.rpc.tls_key,
            insecure = self.rpc.insecure,
            q_client = quota(&self.rpc.quota.client),
            q_member = quota(&self.rpc.quota.member),
            q_node = quota(&self.rpc.quota.node),
            q_admin = quota(&self.rpc.quota.admin),
            metrics_listen = self.metrics.listen,
            tp = c.timeout_propose_ms,
            tpd = c.timeout_propose_delta_ms,
            tv = c.timeout_prevote_ms,
            tvd = c.timeout_prevote_delta_ms,
            tc = c.timeout_precommit_ms,
            tcd = c.timeout_precommit_delta_ms,
            commit_delay = c.commit_delay_ms,
            empty = c.create_empty_blocks,
            empty_interval = c.empty_block_interval_ms,
            max_block_bytes = c.max_block_bytes,
            max_block_txs = c.max_block_txs,
            keep = self.storage.keep_recent_blocks,
            cache_mb = self.storage.cache_mb,
            mp_txs = self.mempool.max_txs,
            mp_bytes = self.mempool.max_bytes,
            mp_recent = self.mempool.recent_cache,
            snap_interval = self.sync.snapshot_interval,
            snap_keep = self.sync.snapshot_keep,
            chunk_bytes = self.sync.chunk_bytes,
            state_sync = self.sync.state_sync,
            rpc_servers = list(&self.sync.rpc_servers),
            fetchers = self.sync.fetchers_per_peer,
            chunks_in_flight = self.sync.max_chunks_in_flight,
            sync_ca = self.sync.tls_ca,
            sync_cert = self.sync.tls_cert,
            sync_key = self.sync.tls_key,
            level = self.log.level,
            format = self.log.format,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Keypair;

    #[test]
    fn commented_template_parses_back_to_the_same_config() {
        let mut cfg = NodeConfig {
            moniker: "org1".into(),
            ..NodeConfig::default()
        };
        let k = Keypair::from_seed([1; 32]).public();
        cfg.p2p.peers = vec![format!("{k}@org2:26656")];
        cfg.p2p.members = vec![k.to_hex()];
        let text = cfg.to_commented_toml();
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        back.validate(Path::new("config.toml")).unwrap();
    }

    #[test]
    fn errors_name_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        let cases = [
            ("[p2p]\nlisten = \"nowhere\"\n", "p2p.listen"),
            ("[p2p]\npeers = [\"abc\"]\n", "p2p.peers[0]"),
            (
                "[consensus]\ntimeout_propose_ms = \"slow\"\n",
                "timeout_propose_ms",
            ),
            ("[consensus]\nno_such_field = 1\n", "no_such_field"),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            (
                "[rpc]\nmax_connections_per_address = 0\n",
                "rpc.max_connections_per_address",
            ),
        ];
        for (text, field) in cases {
            std::fs::write(&p, text).unwrap();
            let e = NodeConfig::load(&p).unwrap_err().to_string();
            assert!(
                e.contains(field) && e.contains("config.toml"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn peer_spec_parsing() {
        let k = Keypair::from_seed([1; 32]).public();
        let p: PeerSpec = format!("{k}@127.0.0.1:5").parse().unwrap();
        assert_eq!(p.addr, "127.0.0.1:5");
        assert_eq!(p.to_string(), format!("{k}@127.0.0.1:5"));
        assert!(format!("{k}@host").parse::<PeerSpec>().is_err());
        assert!("zz@host:1".parse::<PeerSpec>().is_err());
    }
}
