//! The result of a run: JSON for machines, a table for people.

use std::collections::BTreeMap;

use serde::Serialize;

use super::resources::NodeUsage;
use super::stats::Percentiles;

/// Block interval summary, in ms.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Interval {
    /// Median interval between consecutive block times.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: f64,
}

/// Rounds needed per height.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Rounds {
    /// Mean of (decision round + 1).
    pub mean: f64,
    /// Largest.
    pub max: u32,
}

/// A refusal class.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    /// How many.
    pub count: u64,
    /// The first message.
    pub example: String,
}

/// Everything a run measured. Fields a scenario does not measure are absent
/// from the JSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Validators (or nodes driven).
    pub nodes: usize,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix: u64,
    /// Consensus settings of a local network (timeouts, block size), or
    /// "remote network".
    pub timeouts: String,
    /// Timed window, seconds.
    pub duration_s: f64,
    /// Transaction size, bytes.
    pub tx_bytes: usize,
    /// How the load was submitted: "stream" (one SubmitStream per
    /// connection) or "unary" (one Submit call per transaction).
    pub submit: String,
    /// Rate asked for (tx/s); absent for as fast as possible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_target: Option<f64>,
    /// Rate actually offered over the window (tx/s).
    pub offered_tps: f64,
    /// Submissions sent.
    pub sent: u64,
    /// Submissions accepted into a mempool.
    pub accepted: u64,
    /// Refusals by gRPC code.
    pub refused: BTreeMap<String, Refusal>,
    /// Offered transactions found in committed blocks (window and drain).
    pub committed: u64,
    /// Accepted transactions not committed by the end of the drain.
    pub uncommitted: u64,
    /// Offered transactions committed in blocks that arrived within the window,
    /// per second.
    pub committed_tps: f64,
    /// Submit-to-commit latency, ms.
    pub latency_ms: Percentiles,
    /// Interval between consecutive block times, ms.
    pub block_interval_ms: Interval,
    /// Blocks per second over the window.
    pub blocks_per_s: f64,
    /// Blocks committed in the window.
    pub blocks: usize,
    /// Rounds per height.
    pub rounds_per_height: Rounds,
    /// Largest resident memory of any node, MB.
    pub rss_mb_max: f64,
    /// Every node's memory and CPU.
    pub node_usage: Vec<NodeUsage>,
    /// CPU of the load generator itself, percent of one core.
    pub bench_cpu_percent: f64,
    /// `sync`: state entries built (records plus accounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// `sync`: seconds to build the state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_s: Option<f64>,
    /// `sync`: seconds from a joiner's start until it follows the tip, by state
    /// sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_sync_s: Option<f64>,
    /// `sync`: the same by replaying every block from genesis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_s: Option<f64>,
    /// `sync`: replay_s / state_sync_s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speedup: Option<f64>,
    /// `sync`: peak resident memory of the replaying joiner, MB (`rss_mb_max`
    /// is the state-sync joiner's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_rss_mb_max: Option<f64>,
    /// `catchup`: blocks synced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catchup_blocks: Option<u64>,
    /// `catchup`: seconds to sync them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catchup_s: Option<f64>,
    /// `catchup`: blocks per second synced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catchup_blocks_per_s: Option<f64>,
    /// `serve`: the block interval of the window without clients, before
    /// the loaded one (`block_interval_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_block_interval_ms: Option<Interval>,
    /// `serve`: blocks per second of that window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_blocks_per_s: Option<f64>,
    /// `serve`: what the clients hammering the nodes got served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hammer: Option<super::hammer::HammerRates>,
    /// Notes on anything that went wrong or limits the figures.
    pub notes: Vec<String>,
}

impl Report {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![(
            "scenario".into(),
            format!(
                "{} ({} nodes, {})",
                self.scenario, self.nodes, self.timeouts
            ),
        )];
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        if self.sent > 0 {
            row(
                "offered",
                format!(
                    "{:.0} tx/s{} ({} sent, {} accepted, {} refused; {} submit)",
                    self.offered_tps,
                    self.rate_target
                        .map(|r| format!(" of {r:.0} asked"))
                        .unwrap_or_else(|| " (max)".into()),
                    self.sent,
                    self.accepted,
                    self.refused.values().map(|r| r.count).sum::<u64>(),
                    self.submit
                ),
            );
            row(
                "committed",
                format!(
                    "{:.0} tx/s ({} committed, {} uncommitted)",
                    self.committed_tps, self.committed, self.uncommitted
                ),
            );
            let l = &self.latency_ms;
            row(
                "latency ms",
                format!(
                    "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}",
                    l.p50, l.p90, l.p99, l.max, l.mean
                ),
            );
        }
        if let (Some(b), Some(rate)) = (&self.idle_block_interval_ms, self.idle_blocks_per_s) {
            row(
                "idle block interval ms",
                format!(
                    "p50 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}  ({rate:.1} blocks/s)",
                    b.p50, b.p99, b.max, b.mean
                ),
            );
        }
        if self.blocks > 0 {
            let b = &self.block_interval_ms;
            row(
                if self.hammer.is_some() {
                    "loaded block interval ms"
                } else {
                    "block interval ms"
                },
                format!(
                    "p50 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}  ({} blocks, {:.1} blocks/s)",
                    b.p50, b.p99, b.max, b.mean, self.blocks, self.blocks_per_s
                ),
            );
            row(
                "rounds per height",
                format!(
                    "mean {:.2}  max {}",
                    self.rounds_per_height.mean, self.rounds_per_height.max
                ),
            );
        }
        if let Some(h) = &self.hammer {
            row(
                "served under load",
                format!(
                    "{:.1} chunks/s ({:.1} MiB/s), {:.0} blocks/s streamed, {:.1} connections/s, {} refused, {} errors",
                    h.chunks_per_s,
                    h.chunk_mib_per_s,
                    h.blocks_per_s,
                    h.connections_per_s,
                    h.refused,
                    h.errors
                ),
            );
        }
        for n in &self.node_usage {
            row(
                &format!("{} rss/cpu", n.name),
                format!(
                    "peak {:.0} MB  end {:.0} MB  cpu {:.0}%",
                    n.rss_mb_max, n.rss_mb_end, n.cpu_percent
                ),
            );
        }
        if self.bench_cpu_percent > 0.0 {
            row(
                "load generator cpu",
                format!("{:.0}%", self.bench_cpu_percent),
            );
        }
        let opt = |v: Option<f64>, unit: &str| v.map(|x| format!("{x:.2}{unit}"));
        if let Some(e) = self.entries {
            row("state entries", e.to_string());
        }
        for (k, v) in [
            ("build", opt(self.build_s, " s")),
            ("state sync", opt(self.state_sync_s, " s")),
            ("replay from genesis", opt(self.replay_s, " s")),
            ("speedup", opt(self.speedup, "x")),
            ("replay joiner rss", opt(self.replay_rss_mb_max, " MB")),
            ("catchup", opt(self.catchup_s, " s")),
            ("catchup rate", opt(self.catchup_blocks_per_s, " blocks/s")),
        ] {
            if let Some(v) = v {
                row(k, v);
            }
        }
        if self.scenario == "sync" {
            row(
                "joiner rss (state sync)",
                format!("{:.0} MB", self.rss_mb_max),
            );
        }
        for (code, r) in &self.refused {
            row(
                &format!("refused {code}"),
                format!("{} (e.g. {})", r.count, r.example),
            );
        }
        for n in &self.notes {
            row("note", n.clone());
        }
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<w$}  {v}\n"))
            .collect()
    }
}
