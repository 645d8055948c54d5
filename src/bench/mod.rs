//! `consort bench`: throughput, latency, block interval, sync speed and memory,
//! measured against a running network or a local one started for the run.
//!
//! - [`pool`]: transactions signed before the timed window.
//! - [`load`]: the open-loop load over several gRPC connections.
//! - [`observe`]: committed blocks from `StreamBlocks`: what counts as committed,
//!   and every transaction's submit-to-commit latency.
//! - [`resources`]: every node's memory and CPU.
//! - [`local`]: a local network of child processes.
//! - [`throughput`]: the `idle`, `light` and `saturate` scenarios.
//! - [`sync`]: the `sync` and `catchup` scenarios.
//! - [`hammer`]: clients hammering what nodes serve from disk.
//! - [`serve`]: the `serve` scenario: block interval with and without them.
//! - [`report`]: the result, as a table and as JSON.

pub mod hammer;
pub mod load;
pub mod local;
pub mod observe;
pub mod pool;
pub mod report;
pub mod resources;
pub mod serve;
pub mod stats;
pub mod sync;
pub mod throughput;

use std::path::PathBuf;
use std::time::Duration;

pub use report::Report;

use crate::config::ConsensusConfig;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments do not describe a run.
    #[error("{0}")]
    Usage(String),
    /// Generating or starting the local network failed.
    #[error("setting up the network: {0}")]
    Setup(String),
    /// A node failed, or did not get where it had to.
    #[error("{0}")]
    Node(String),
    /// A gRPC call failed.
    #[error("{0}")]
    Client(#[from] crate::client::ClientError),
}

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// No load: block interval.
    Idle,
    /// 4,000 tx/s offered (or `--rate`).
    Light,
    /// As fast as the in-flight window allows (or `--rate`).
    Saturate,
    /// Build a state of N entries, then time a joiner by state sync and one by
    /// block replay from genesis.
    Sync,
    /// Block sync of many (empty) blocks.
    Catchup,
    /// Block interval without clients, then while clients hammer the nodes'
    /// snapshot chunks, block ranges and connections.
    Serve,
}

impl Scenario {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Light => "light",
            Scenario::Saturate => "saturate",
            Scenario::Sync => "sync",
            Scenario::Catchup => "catchup",
            Scenario::Serve => "serve",
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Scenario, String> {
        Ok(match s {
            "idle" => Scenario::Idle,
            "light" => Scenario::Light,
            "saturate" => Scenario::Saturate,
            "sync" => Scenario::Sync,
            "catchup" => Scenario::Catchup,
            "serve" => Scenario::Serve,
            _ => {
                return Err(format!(
                    "unknown scenario {s:?} (idle, light, saturate, sync, catchup, serve)"
                ));
            }
        })
    }
}

/// The network a run drives.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start `validators` local validators as child processes of `exe`.
    Local {
        /// Number of validators.
        validators: usize,
        /// The `consort` binary.
        exe: PathBuf,
        /// Directory for the homes (cleared first).
        dir: PathBuf,
        /// First port.
        base_port: u16,
        /// Keep the directory afterwards.
        keep: bool,
        /// Consensus settings of the nodes.
        consensus: ConsensusConfig,
        /// Serve the API over TLS with the consortium PKI (the load connects
        /// with the first organization's admin certificate).
        tls: bool,
    },
    /// A running network.
    Remote {
        /// gRPC addresses.
        nodes: Vec<String>,
        /// Metrics addresses (same order), to read memory and CPU.
        metrics: Vec<String>,
        /// A funded client key that pays the accounts the load signs with.
        fund_key: Option<PathBuf>,
    },
}

/// One run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// What to measure.
    pub scenario: Scenario,
    /// The network.
    pub target: Target,
    /// Offered rate (tx/s); `None` for as fast as possible. Defaults by scenario.
    pub rate: Option<Option<f64>>,
    /// Timed window.
    pub duration: Duration,
    /// gRPC connections per node for submissions.
    pub connections: usize,
    /// One Submit call per transaction instead of a SubmitStream per connection.
    pub unary: bool,
    /// Encoded size of each transaction.
    pub tx_bytes: usize,
    /// Transactions signed for `--rate max` (default: enough for 30,000 tx/s).
    pub pool: Option<usize>,
    /// How long to wait after the window for offered transactions to commit.
    pub drain: Duration,
    /// `sync`: entries of the state to build; `serve`: accounts funded at
    /// genesis, whose snapshot the clients fetch.
    pub entries: u64,
    /// `catchup`: blocks to sync.
    pub blocks: u64,
    /// `sync` and `catchup`: give up on a joiner after this long.
    pub join_timeout: Duration,
    /// Print a progress line every second.
    pub progress: bool,
}

/// Minimal timeouts for a local benchmark network: the `--fast` devnet settings
/// with no pause between heights.
pub fn minimal_timeouts() -> ConsensusConfig {
    ConsensusConfig {
        commit_delay_ms: 0,
        ..ConsensusConfig::fast()
    }
}

/// Runs `cfg`.
pub async fn run(cfg: &BenchConfig) -> Result<Report, BenchError> {
    match cfg.scenario {
        Scenario::Idle | Scenario::Light | Scenario::Saturate => throughput::run(cfg).await,
        Scenario::Sync => sync::run_sync(cfg).await,
        Scenario::Catchup => sync::run_catchup(cfg).await,
        Scenario::Serve => serve::run(cfg).await,
    }
}
