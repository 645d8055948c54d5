//! `consort bench`: measure a running network or a local one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use consort::bench::{BenchConfig, Scenario, Target, minimal_timeouts};
use consort::config::ConsensusConfig;

#[derive(Args)]
pub struct BenchArgs {
    /// What to measure: idle (block interval), light (4,000 tx/s), saturate
    /// (highest rate), sync (state sync vs replay; --local only), catchup (block
    /// sync of --blocks blocks; --local only), serve (block interval idle, then
    /// while clients hammer snapshot chunks, block ranges and connections).
    #[arg(long, default_value = "light")]
    scenario: Scenario,
    /// Start a local network of N validators (child processes of this binary).
    #[arg(long, conflicts_with = "nodes")]
    local: Option<usize>,
    /// Drive a running network: comma-separated gRPC addresses.
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Metrics addresses of --nodes (same order), to read memory and CPU.
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<String>,
    /// With --nodes: a funded client key that pays the accounts the load signs
    /// with (e.g. a devnet's clients/client0.json).
    #[arg(long)]
    fund_key: Option<PathBuf>,
    /// Offered rate in tx/s, or "max" (default: by scenario; sync builds its
    /// state at this rate).
    #[arg(long)]
    rate: Option<String>,
    /// Timed window in seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// gRPC connections per node for submissions (a node takes 16 from one
    /// address unless its rpc.max_connections_per_address says otherwise; a
    /// local network is configured to take them).
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Submit each transaction with its own Submit call instead of one
    /// SubmitStream per connection.
    #[arg(long)]
    unary: bool,
    /// Encoded size of each transaction in bytes.
    #[arg(long, default_value_t = 256)]
    tx_bytes: usize,
    /// Transactions to pre-sign for --rate max (default: 30,000 per second of
    /// window).
    #[arg(long)]
    pool: Option<usize>,
    /// Seconds to wait after the window for offered transactions to commit.
    #[arg(long, default_value_t = 15.0)]
    drain: f64,
    /// Consensus timeouts of a local network: minimal or default.
    #[arg(long, default_value = "minimal")]
    timeouts: String,
    /// sync: entries of the state to build; serve: accounts at genesis (the
    /// snapshot the clients fetch).
    #[arg(long, default_value_t = 100_000)]
    entries: u64,
    /// catchup: blocks to sync.
    #[arg(long, default_value_t = 10_000)]
    blocks: u64,
    /// sync, catchup: seconds to wait for the chain to build or a joiner to
    /// reach the tip.
    #[arg(long, default_value_t = 1800.0)]
    join_timeout: f64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Directory for a local network's homes and logs (default: a fresh
    /// temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the local network's directory.
    #[arg(long)]
    keep: bool,
    /// First port of a local network (node i uses base + 10 i).
    #[arg(long, default_value_t = 46000)]
    base_port: u16,
    /// Binary the local nodes run (default: this one), to compare builds under
    /// the same load generator.
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Most transactions per block of a local network (default: the config's).
    #[arg(long)]
    max_block_txs: Option<usize>,
    /// Serve a local network's API over TLS 1.3 with client certificates (the
    /// consortium PKI); for --nodes, give --ca/--cert/--key instead.
    #[arg(long, requires = "local")]
    tls: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

fn secs(s: f64, what: &str) -> Result<Duration> {
    if !(s.is_finite() && s >= 0.0) {
        bail!("{what} must be a non-negative number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Runs the benchmark and prints (and writes) its report.
pub async fn run(a: BenchArgs) -> Result<()> {
    let rate = match a.rate.as_deref() {
        None => None,
        Some("max") => Some(None),
        Some(r) => {
            let v: f64 = r
                .parse()
                .with_context(|| format!("--rate {r:?}: a number of tx/s or \"max\""))?;
            if !(v.is_finite() && v > 0.0) {
                bail!("--rate must be positive");
            }
            Some(Some(v))
        }
    };
    let mut consensus = match a.timeouts.as_str() {
        "minimal" => minimal_timeouts(),
        "default" => ConsensusConfig::default(),
        t => bail!("--timeouts {t:?}: minimal or default"),
    };
    if let Some(m) = a.max_block_txs {
        if m == 0 {
            bail!("--max-block-txs must be at least 1");
        }
        consensus.max_block_txs = m;
    }
    let target = match (a.local, a.nodes.is_empty()) {
        (Some(n), true) => {
            if n == 0 {
                bail!("--local must be at least 1");
            }
            Target::Local {
                validators: n,
                exe: match a.node_bin {
                    Some(p) => p,
                    None => std::env::current_exe().context("finding the consort binary")?,
                },
                dir: a.dir.unwrap_or_else(consort::bench::local::default_dir),
                base_port: a.base_port,
                keep: a.keep,
                consensus,
                tls: a.tls,
            }
        }
        (None, false) => Target::Remote {
            nodes: a.nodes,
            metrics: a.metrics,
            fund_key: a.fund_key,
        },
        _ => bail!("give --local N or --nodes HOST:PORT,..."),
    };
    if a.tx_bytes < 160 || a.tx_bytes > 16 * 1024 {
        bail!("--tx-bytes must be between 160 and 16384");
    }
    let cfg = BenchConfig {
        scenario: a.scenario,
        target,
        rate,
        duration: secs(a.duration, "--duration")?,
        connections: a.connections.clamp(1, 64),
        unary: a.unary,
        tx_bytes: a.tx_bytes,
        pool: a.pool,
        drain: secs(a.drain, "--drain")?,
        entries: a.entries,
        blocks: a.blocks,
        join_timeout: secs(a.join_timeout, "--join-timeout")?,
        progress: !a.quiet,
    };
    let report = consort::bench::run(&cfg).await?;
    print!("{}", report.table());
    if let Some(path) = a.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
