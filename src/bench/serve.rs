//! The `serve` scenario: does serving clients hold back consensus? The block
//! interval of a window without clients, then of a window of the same length
//! while [`Hammer`] fetches snapshot chunks, streams block ranges and opens
//! connections on every node.

use std::time::{Duration, Instant};

use super::hammer::{Hammer, HammerSpec};
use super::load::LoadSpec;
use super::sync::newest_snapshot;
use super::throughput::{Driven, base_report, drive, setup, summarize};
use super::{BenchConfig, BenchError, Report, Target};

/// Snapshot interval of the first start: a snapshot of the genesis state a
/// few blocks in, then none (see [`run`]).
const FIRST_SNAPSHOT: u64 = 10;

/// Takes a snapshot of the genesis state on every validator, then restarts
/// them without snapshots: taking one costs seconds of CPU over a large state
/// and would land in either window at random.
async fn snapshot_then_restart(d: &mut Driven, progress: bool) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(300);
    for addr in d.grpc.clone() {
        while newest_snapshot(&addr).await.is_none() {
            if Instant::now() > deadline {
                return Err(BenchError::Node(format!(
                    "{addr} listed no snapshot within 300 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let Some(net) = d.local.as_mut() else {
        return Ok(());
    };
    if progress {
        eprintln!("every validator holds a snapshot; restarting them without snapshots");
    }
    let idx: Vec<usize> = (0..d.grpc.len()).collect();
    for &i in &idx {
        net.stop(i);
        net.edit_config(i, |c| c.sync.snapshot_interval = 0)?;
    }
    for &i in &idx {
        net.start(i)?;
    }
    let mut top = 0;
    for addr in &d.grpc {
        if let Ok(c) = crate::client::Client::connect(addr).await {
            if let Ok(s) = c.status().await {
                top = top.max(s.height);
            }
        }
    }
    net.wait_height(&idx, top + 5, Duration::from_secs(120))
        .await?;
    Ok(())
}

/// Starts the memory and CPU trackers of a local network afresh, so that a
/// window's figures are its own.
fn fresh_trackers(d: &mut Driven) {
    if let Some(net) = d.local.as_ref() {
        for (i, t) in d.trackers.iter_mut().enumerate() {
            *t = super::resources::Tracker::new(net.nodes[i].name.clone(), net.probe(i));
        }
    }
}

/// Runs `serve`: an idle window, then a window of the same length under the
/// hammer.
pub async fn run(cfg: &BenchConfig) -> Result<Report, BenchError> {
    let entries = cfg.entries;
    let local = matches!(cfg.target, Target::Local { .. });
    let mut d = setup(
        cfg,
        0,
        0,
        |s| s.extra_accounts = entries,
        |_, _, c| {
            c.sync.snapshot_interval = FIRST_SNAPSHOT;
            c.sync.snapshot_keep = 1;
        },
    )
    .await?;
    snapshot_then_restart(&mut d, cfg.progress).await?;
    let idle_spec = LoadSpec {
        rate: None,
        duration: cfg.duration,
        retry: false,
        unary: cfg.unary,
    };
    if cfg.progress {
        eprintln!("idle window: {:.0}s", cfg.duration.as_secs_f64());
    }
    fresh_trackers(&mut d);
    let idle = drive(
        &mut d,
        None,
        idle_spec.clone(),
        Duration::ZERO,
        1,
        cfg.progress,
    )
    .await?;
    let mut idle_report = base_report(cfg, d.grpc.len(), &d.timeouts);
    summarize(&mut idle_report, &idle, cfg.duration, &d.trackers);
    let spec = HammerSpec::default();
    if cfg.progress {
        eprintln!(
            "loaded window: {:.0}s; per node {} chunk, {} range ({} blocks) and {} connecting clients",
            cfg.duration.as_secs_f64(),
            spec.chunk_tasks,
            spec.range_tasks,
            spec.range_blocks,
            spec.connect_tasks
        );
    }
    fresh_trackers(&mut d);
    let hammer = Hammer::start(&d.grpc, &spec);
    let started = Instant::now();
    let loaded = drive(&mut d, None, idle_spec, Duration::ZERO, 1, cfg.progress).await;
    let secs = started.elapsed().as_secs_f64();
    let counts = hammer.stop().await;
    let loaded = loaded?;
    let mut r = base_report(cfg, d.grpc.len(), &d.timeouts);
    summarize(&mut r, &loaded, cfg.duration, &d.trackers);
    r.idle_block_interval_ms = Some(idle_report.block_interval_ms);
    r.idle_blocks_per_s = Some(idle_report.blocks_per_s);
    r.hammer = Some(counts.rates(secs));
    r.entries = Some(entries);
    if !local {
        r.notes
            .push("a running network: its snapshots and limits are its own configuration's".into());
    }
    Ok(r)
}
