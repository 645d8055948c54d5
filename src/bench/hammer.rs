//! Clients that hammer what a node serves from its disk: snapshot chunks
//! (`GetChunk`, MiBs each) and block ranges (`StreamBlockRange`, thousands of
//! reads), from several tasks per node, while others open connections in a
//! loop. The `serve` scenario and the cluster tests run it while the chain
//! commits, to see whether serving clients holds back consensus.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::pb;
use crate::pb::sync_service_client::SyncServiceClient;

/// What to run against each node.
#[derive(Clone, Debug)]
pub struct HammerSpec {
    /// Tasks per node fetching snapshot chunks, one after another.
    pub chunk_tasks: usize,
    /// Tasks per node streaming block ranges, one after another.
    pub range_tasks: usize,
    /// Blocks per range request.
    pub range_blocks: u64,
    /// Tasks per node opening a connection, asking the status and closing it,
    /// in a loop.
    pub connect_tasks: usize,
}

impl Default for HammerSpec {
    fn default() -> HammerSpec {
        HammerSpec {
            chunk_tasks: 3,
            range_tasks: 3,
            range_blocks: 1000,
            connect_tasks: 1,
        }
    }
}

/// What the hammer got done.
#[derive(Debug, Default)]
pub struct HammerCounts {
    /// Chunks fetched.
    pub chunks: AtomicU64,
    /// Bytes of chunks fetched.
    pub chunk_bytes: AtomicU64,
    /// Blocks streamed.
    pub blocks: AtomicU64,
    /// Connections opened and answered.
    pub connections: AtomicU64,
    /// Calls or connections the node refused for a limit (RESOURCE_EXHAUSTED,
    /// or a connection closed at once).
    pub refused: AtomicU64,
    /// Other failures.
    pub errors: AtomicU64,
}

/// The hammer's counts over a window, per second.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HammerRates {
    /// Snapshot chunks fetched per second.
    pub chunks_per_s: f64,
    /// MiB of chunks per second.
    pub chunk_mib_per_s: f64,
    /// Blocks streamed per second.
    pub blocks_per_s: f64,
    /// Connections opened and answered per second.
    pub connections_per_s: f64,
    /// Refusals for a limit, in all.
    pub refused: u64,
    /// Other failures, in all.
    pub errors: u64,
}

impl HammerCounts {
    /// The counts over `secs` seconds.
    pub fn rates(&self, secs: f64) -> HammerRates {
        let s = secs.max(1e-9);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HammerRates {
            chunks_per_s: get(&self.chunks) as f64 / s,
            chunk_mib_per_s: get(&self.chunk_bytes) as f64 / s / (1024.0 * 1024.0),
            blocks_per_s: get(&self.blocks) as f64 / s,
            connections_per_s: get(&self.connections) as f64 / s,
            refused: get(&self.refused),
            errors: get(&self.errors),
        }
    }

    fn failed(&self, s: &tonic::Status) {
        if s.code() == tonic::Code::ResourceExhausted {
            self.refused.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A running hammer.
pub struct Hammer {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// What it got done so far.
    pub counts: Arc<HammerCounts>,
}

/// A small deterministic generator, so that each task asks for other chunks
/// and heights without a random source.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

/// Waits a little after a failure, or returns true if stopped meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(100)) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

async fn chunks(
    addr: String,
    seed: u64,
    counts: Arc<HammerCounts>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = Xorshift(seed | 1);
    while !*stop.borrow() {
        let Ok(c) = Client::connect(&addr).await else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            if pause(&mut stop).await {
                return;
            }
            continue;
        };
        let mut sync = SyncServiceClient::new(c.channel()).max_decoding_message_size(64 << 20);
        // Ask for chunks of the newest snapshot until it is gone.
        let newest = match sync.list_snapshots(pb::ListSnapshotsRequest {}).await {
            Ok(r) => r
                .into_inner()
                .snapshots
                .into_iter()
                .max_by_key(|s| s.height),
            Err(s) => {
                counts.failed(&s);
                None
            }
        };
        let Some(snap) = newest.filter(|s| s.chunks > 0) else {
            if pause(&mut stop).await {
                return;
            }
            continue;
        };
        while !*stop.borrow() {
            let index = rng.next(u64::from(snap.chunks)) as u32;
            let call = sync.get_chunk(pb::GetChunkRequest {
                height: snap.height,
                index,
            });
            let r = tokio::select! {
                r = call => r,
                _ = stop.changed() => return,
            };
            match r {
                Ok(r) => {
                    counts.chunks.fetch_add(1, Ordering::Relaxed);
                    counts
                        .chunk_bytes
                        .fetch_add(r.into_inner().chunk.len() as u64, Ordering::Relaxed);
                }
                Err(s) => {
                    counts.failed(&s);
                    break;
                }
            }
        }
    }
}

async fn ranges(
    addr: String,
    seed: u64,
    len: u64,
    counts: Arc<HammerCounts>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = Xorshift(seed | 1);
    while !*stop.borrow() {
        let Ok(c) = Client::connect(&addr).await else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            if pause(&mut stop).await {
                return;
            }
            continue;
        };
        let mut sync = SyncServiceClient::new(c.channel()).max_decoding_message_size(64 << 20);
        while !*stop.borrow() {
            let latest = match c.status().await {
                Ok(s) => s.height,
                Err(_) => break,
            };
            let span = len.clamp(1, crate::rpc::MAX_RANGE);
            let from = 1 + rng.next(latest.saturating_sub(span).max(1));
            let call = sync.stream_block_range(pb::StreamBlockRangeRequest {
                from_height: from,
                to_height: from + span - 1,
            });
            let mut stream = match call.await {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    counts.failed(&s);
                    if pause(&mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    m = stream.message() => m,
                    _ = stop.changed() => return,
                };
                match next {
                    Ok(Some(_)) => {
                        counts.blocks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => break,
                    Err(s) => {
                        counts.failed(&s);
                        break;
                    }
                }
            }
        }
    }
}

async fn connects(addr: String, counts: Arc<HammerCounts>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let answered = match Client::connect(&addr).await {
            Ok(c) => c.status().await.is_ok(),
            Err(_) => false,
        };
        if answered {
            counts.connections.fetch_add(1, Ordering::Relaxed);
        } else {
            // Closed at once by a connection limit, or the node is down.
            counts.refused.fetch_add(1, Ordering::Relaxed);
            if pause(&mut stop).await {
                return;
            }
        }
    }
}

impl Hammer {
    /// Starts `spec`'s tasks against every node of `addrs`.
    pub fn start(addrs: &[String], spec: &HammerSpec) -> Hammer {
        let (stop, stopped) = watch::channel(false);
        let counts = Arc::new(HammerCounts::default());
        let mut tasks = JoinSet::new();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for addr in addrs {
            for _ in 0..spec.chunk_tasks {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                tasks.spawn(chunks(addr.clone(), seed, counts.clone(), stopped.clone()));
            }
            for _ in 0..spec.range_tasks {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                tasks.spawn(ranges(
                    addr.clone(),
                    seed,
                    spec.range_blocks,
                    counts.clone(),
                    stopped.clone(),
                ));
            }
            for _ in 0..spec.connect_tasks {
                tasks.spawn(connects(addr.clone(), counts.clone(), stopped.clone()));
            }
        }
        Hammer {
            stop,
            tasks,
            counts,
        }
    }

    /// Stops every task and waits for them (a few seconds at most).
    pub async fn stop(mut self) -> Arc<HammerCounts> {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
        self.counts
    }
}
