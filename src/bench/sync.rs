//! The `sync` and `catchup` scenarios: how fast a new member follows the tip,
//! by state sync, by replaying every block from genesis, and by block sync of
//! a long chain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::load::LoadSpec;
use super::pool::accounts_for;
use super::resources::Tracker;
use super::throughput::{base_report, drive, setup, summarize};
use super::{BenchConfig, BenchError, Report, Target};
use crate::client::Client;
use crate::pb;

/// Snapshot every this many blocks in the `sync` scenario: the configuration's
/// default. With a large state a snapshot takes seconds of CPU, and the empty
/// blocks that follow the build come ten a second: every 100 blocks kept every
/// validator snapshotting without pause while the joiners ran (state sync of a
/// million entries measured 14.7-20.2 s against 5.5-12.6 s with this interval).
const SNAPSHOT_INTERVAL: u64 = 1000;

fn local_validators(cfg: &BenchConfig) -> Result<usize, BenchError> {
    match &cfg.target {
        Target::Local { validators, .. } => Ok(*validators),
        Target::Remote { .. } => Err(BenchError::Usage(format!(
            "the {} scenario starts its own joiners: use --local N",
            cfg.scenario.name()
        ))),
    }
}

/// The newest snapshot height node `addr` offers.
pub(super) async fn newest_snapshot(addr: &str) -> Option<u64> {
    let c = Client::connect(addr).await.ok()?;
    let mut s = pb::sync_service_client::SyncServiceClient::new(c.channel());
    let r = s.list_snapshots(pb::ListSnapshotsRequest {}).await.ok()?;
    r.into_inner().snapshots.iter().map(|s| s.height).max()
}

/// Starts member `i` and waits until it follows the tip of validator 0 (done
/// restoring, at most one height behind); returns the seconds that took and
/// its peak memory (MB).
async fn time_join(
    d: &mut super::throughput::Driven,
    i: usize,
    timeout: Duration,
    progress: bool,
) -> Result<(f64, f64), BenchError> {
    let net = d
        .local
        .as_mut()
        .ok_or_else(|| BenchError::Usage("joiners need a local network".into()))?;
    let name = net.nodes[i].name.clone();
    let addr = net.nodes[i].grpc.clone();
    let tip_addr = net.nodes[0].grpc.clone();
    let started = Instant::now();
    net.start(i)?;
    let mut tracker = Tracker::new(name.clone(), net.probe(i));
    let tip = Client::connect(&tip_addr).await?;
    let mut joiner: Option<Client> = None;
    let mut last_print = Instant::now();
    loop {
        tracker.poll().await;
        if let Some(why) = net.exited(i) {
            return Err(BenchError::Node(why));
        }
        if joiner.is_none() {
            joiner = Client::connect(&addr).await.ok();
        }
        if let Some(j) = &joiner {
            if let (Ok(js), Ok(ts)) = (j.status().await, tip.status().await) {
                if progress && last_print.elapsed() >= Duration::from_secs(2) {
                    eprintln!(
                        "[{:>6.1}s] {name}: {} at height {} of {}",
                        started.elapsed().as_secs_f64(),
                        js.sync_phase,
                        js.height,
                        ts.height
                    );
                    last_print = Instant::now();
                }
                // A member keeps following by block sync; a validator switches to
                // consensus. Either way it has caught up when it holds the tip.
                if js.sync_phase != "state_sync" && js.height > 0 && js.height + 1 >= ts.height {
                    let secs = started.elapsed().as_secs_f64();
                    tracker.poll().await;
                    net.stop(i);
                    return Ok((secs, tracker.usage().rss_mb_max));
                }
            }
        }
        if started.elapsed() > timeout {
            net.stop(i);
            return Err(BenchError::Node(format!(
                "{name} did not reach the tip within {}s; see {}",
                timeout.as_secs(),
                net.log_path(i).display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Builds a chain whose state holds `cfg.entries` entries of about
/// `cfg.tx_bytes` bytes (one record per transaction), then times a joiner by
/// state sync and a joiner by block replay from genesis.
pub async fn run_sync(cfg: &BenchConfig) -> Result<Report, BenchError> {
    let validators = local_validators(cfg)?;
    let count = cfg.entries as usize;
    let accounts = accounts_for(count);
    let mut d = setup(
        cfg,
        accounts,
        2,
        |s| {
            // Blocks without transactions come slowly, so that the joiners chase
            // a tip that moves little once the state is built.
            s.consensus.empty_block_interval_ms = 100;
        },
        |i, nodes, c| {
            c.sync.snapshot_interval = SNAPSHOT_INTERVAL;
            c.sync.snapshot_keep = 2;
            if i >= validators {
                // The joiners ask the validators' gRPC servers.
                c.sync.rpc_servers = nodes[..validators].iter().map(|n| n.grpc.clone()).collect();
            }
            if i == validators {
                c.sync.state_sync = true;
            }
        },
    )
    .await?;
    let pool = d.sign_pool(cfg, count, accounts, true).await?;
    if cfg.progress {
        eprintln!("building the state: {count} records");
    }
    // As fast as possible unless --rate says otherwise.
    let rate = cfg.rate.flatten();
    let build_started = Instant::now();
    let w = drive(
        &mut d,
        Some(Arc::new(pool)),
        LoadSpec {
            rate,
            duration: cfg.join_timeout,
            // The state must hold every record: what a busy node refuses is
            // offered again.
            retry: true,
            unary: cfg.unary,
        },
        Duration::from_secs(60),
        cfg.connections,
        cfg.progress,
    )
    .await?;
    let build_s = build_started.elapsed().as_secs_f64();
    let mut r = base_report(cfg, validators, &d.timeouts);
    summarize(&mut r, &w, w.elapsed, &d.trackers);
    let built_height = w.observed.height();
    r.entries = Some(w.observed.committed_pool + accounts as u64);
    r.build_s = Some(build_s);
    if w.observed.committed_pool < count as u64 {
        r.notes.push(format!(
            "only {} of {count} records were committed",
            w.observed.committed_pool
        ));
    }
    // A snapshot that holds the whole state, on every validator: a joiner
    // started when the first one lists it would restore while the others are
    // still taking theirs (seconds of CPU each over a million entries), which
    // measured the joiner at 6.1-6.9 s against 4.2-4.4 s on an idle network.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut everywhere = true;
        for addr in &d.grpc[..validators] {
            everywhere &= newest_snapshot(addr)
                .await
                .is_some_and(|h| h >= built_height);
        }
        if everywhere {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Node(format!(
                "no snapshot at or above height {built_height} within 600s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if cfg.progress {
        eprintln!("state built at height {built_height}; joining by state sync");
    }
    let (ss, ss_rss) = time_join(&mut d, validators, cfg.join_timeout, cfg.progress).await?;
    r.state_sync_s = Some(ss);
    r.rss_mb_max = ss_rss;
    if cfg.progress {
        eprintln!("state sync: {ss:.1}s; joining by replay from genesis");
    }
    match time_join(&mut d, validators + 1, cfg.join_timeout, cfg.progress).await {
        Ok((rp, rp_rss)) => {
            r.replay_s = Some(rp);
            r.replay_rss_mb_max = Some(rp_rss);
            r.speedup = Some(rp / ss.max(1e-9));
        }
        Err(e) => r.notes.push(format!("replay joiner: {e}")),
    }
    Ok(r)
}

/// Lets the validators decide `cfg.blocks` (empty) blocks, then times a new
/// member's block sync to the tip.
pub async fn run_catchup(cfg: &BenchConfig) -> Result<Report, BenchError> {
    let validators = local_validators(cfg)?;
    let mut d = setup(cfg, 0, 1, |_| {}, |_, _, _| {}).await?;
    if cfg.progress {
        eprintln!("waiting for {} blocks", cfg.blocks);
    }
    let started = Instant::now();
    let w = {
        let tip = Client::connect(&d.grpc[0]).await?;
        let mut last_print = Instant::now();
        loop {
            let h = tip.status().await?.height;
            if h >= cfg.blocks {
                break started.elapsed();
            }
            if cfg.progress && last_print.elapsed() >= Duration::from_secs(5) {
                eprintln!(
                    "[{:>6.1}s] height {h} ({:.0} blocks/s)",
                    started.elapsed().as_secs_f64(),
                    h as f64 / started.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
            if started.elapsed() > cfg.join_timeout {
                return Err(BenchError::Node(format!(
                    "only {h} blocks after {}s",
                    cfg.join_timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let mut r = base_report(cfg, validators, &d.timeouts);
    r.duration_s = w.as_secs_f64();
    let target = Client::connect(&d.grpc[0]).await?.status().await?.height;
    r.blocks_per_s = target as f64 / w.as_secs_f64();
    for t in d.trackers.iter_mut() {
        t.poll().await;
    }
    let (secs, rss) = time_join(&mut d, validators, cfg.join_timeout, cfg.progress).await?;
    // The joiner follows the tip, which kept moving: count what it reached.
    r.catchup_blocks = Some(target);
    r.catchup_s = Some(secs);
    r.catchup_blocks_per_s = Some(target as f64 / secs);
    r.node_usage = d.trackers.iter().map(Tracker::usage).collect();
    r.rss_mb_max = rss;
    r.notes.push(format!(
        "rss_mb_max is the joiner's; the validators built {target} blocks at {:.0} blocks/s",
        r.blocks_per_s
    ));
    Ok(r)
}
