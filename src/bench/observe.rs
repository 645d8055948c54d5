//! Watching committed blocks through `StreamBlocks`: what was committed, when,
//! in which round, and each pool transaction's submit-to-commit latency.

use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::load::LoadState;
use super::pool::PreSigned;
use crate::client::Client;
use crate::types::Hash;

/// One committed block as seen by the observer.
#[derive(Clone, Debug)]
pub struct BlockSeen {
    /// Its height.
    pub height: u64,
    /// When it arrived, ms after the window started.
    pub arrived_ms: f64,
    /// Its header time (ms since the epoch).
    pub time_ms: u64,
    /// The round it was decided in.
    pub round: u32,
    /// Transactions in it.
    pub txs: usize,
}

/// What the observer has seen so far.
#[derive(Default)]
pub struct Observed {
    /// Every block, in height order.
    pub blocks: Vec<BlockSeen>,
    /// Submit-to-commit latency (ms) of every committed pool transaction, with
    /// the time it was committed (ms after the window started).
    pub latencies: Vec<(f64, f64)>,
    /// Pool transactions committed.
    pub committed_pool: u64,
    /// The stream ended with this error.
    pub error: Option<String>,
}

impl Observed {
    /// Latest height seen.
    pub fn height(&self) -> u64 {
        self.blocks.last().map_or(0, |b| b.height)
    }
}

/// Follows the blocks of `client` from `from` on, recording them into `out`
/// until the stream ends or the task is aborted.
pub async fn follow(
    client: Client,
    from: u64,
    pool: Option<Arc<PreSigned>>,
    load: Option<Arc<LoadState>>,
    t0: std::time::Instant,
    out: Arc<Mutex<Observed>>,
) {
    let mut stream = match client.stream_blocks(from).await {
        Ok(s) => s,
        Err(e) => {
            if let Ok(mut o) = out.lock() {
                o.error = Some(format!("cannot follow blocks: {e}"));
            }
            return;
        }
    };
    while let Some(item) = stream.next().await {
        let arrived_ms = t0.elapsed().as_secs_f64() * 1e3;
        let r = match item {
            Ok(r) => r,
            Err(e) => {
                if let Ok(mut o) = out.lock() {
                    o.error = Some(format!("block stream failed: {}", e.message()));
                }
                return;
            }
        };
        let Some(block) = r.block else { continue };
        let header = block.header.unwrap_or_default();
        let round = r.commit.map_or(0, |c| c.round);
        let mut lat = Vec::new();
        if let (Some(pool), Some(load)) = (&pool, &load) {
            for tx in &block.txs {
                let h = Hash::digest(tx);
                if let Some(i) = pool.index.get(&h) {
                    if let Some(sent) = load.sent_ms(*i as usize) {
                        lat.push((arrived_ms, arrived_ms - sent));
                    }
                }
            }
        }
        let Ok(mut o) = out.lock() else { return };
        o.committed_pool += lat.len() as u64;
        o.latencies.extend(lat);
        o.blocks.push(BlockSeen {
            height: header.height,
            arrived_ms,
            time_ms: header.time_ms,
            round,
            txs: block.txs.len(),
        });
    }
}
