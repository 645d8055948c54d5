//! Serving peers' block requests, off the consensus actor.
//!
//! A peer catching up asks for whole blocks with their commits, a window at a
//! time. Each answer costs two storage reads and can carry megabytes; served
//! inside the consensus actor, a window of requests delayed votes and timeouts
//! by as much. Here one thread of its own reads and answers them, and each peer
//! has a budget: a token bucket of requests, refilled at a fixed rate. What
//! exceeds it is dropped unanswered (the requester asks again, elsewhere, after
//! its request timeout), and so is whatever does not fit the bounded queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Store;
use crate::net::{NetMessage, Network};
use crate::types::{Height, PublicKey};

/// Requests waiting for the server, from all peers together.
pub const QUEUE: usize = 1024;
/// Requests a peer may make at once (a catching-up node asks for at most 64
/// heights ahead, from several peers).
pub const BURST: f64 = 128.0;
/// Requests per second a peer's budget refills with. Block sync measured about
/// 2,700 blocks/s on a 2-core machine from three servers: about 900 each.
pub const PER_SECOND: f64 = 1024.0;

/// A peer's budget of requests.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-peer token buckets.
#[derive(Debug)]
pub struct Budgets {
    burst: f64,
    per_second: f64,
    peers: HashMap<PublicKey, Bucket>,
}

impl Budgets {
    /// Buckets of `burst` requests refilled at `per_second`.
    pub fn new(burst: f64, per_second: f64) -> Budgets {
        Budgets {
            burst,
            per_second,
            peers: HashMap::new(),
        }
    }

    /// Takes one request from `peer`'s budget at `now`; false if it is spent.
    pub fn take(&mut self, peer: PublicKey, now: Instant) -> bool {
        let (burst, rate) = (self.burst, self.per_second);
        let b = self.peers.entry(peer).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets peers whose bucket has been full for a while (bounded memory:
    /// at most one entry per permitted peer anyway).
    fn forget_idle(&mut self, now: Instant) {
        let full_after = Duration::from_secs_f64(self.burst / self.per_second);
        self.peers
            .retain(|_, b| now.saturating_duration_since(b.at) < full_after);
    }
}

/// The handle the actor forwards requests through.
#[derive(Clone, Debug)]
pub struct BlockServer {
    tx: mpsc::Sender<(PublicKey, Height)>,
}

impl BlockServer {
    /// Starts the server's thread. It stops once every handle is dropped.
    pub fn start(store: Arc<dyn Store>, net: Network) -> BlockServer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("block-server".into())
            .spawn(move || serve(rx, store, net));
        if let Err(e) = spawned {
            // Without the thread requests are dropped (the queue fills and
            // nothing reads it): peers fetch from others.
            warn!(error = %e, "could not start the block server thread");
        }
        BlockServer { tx }
    }

    /// Queues `peer`'s request for `height`; dropped if the queue is full.
    pub fn request(&self, peer: PublicKey, height: Height) {
        if self.tx.try_send((peer, height)).is_err() {
            debug!(peer = %peer.short(), %height, "block request dropped: the server is busy");
        }
    }
}

fn serve(mut rx: mpsc::Receiver<(PublicKey, Height)>, store: Arc<dyn Store>, net: Network) {
    let mut budgets = Budgets::new(BURST, PER_SECOND);
    let mut served = 0u64;
    while let Some((peer, height)) = rx.blocking_recv() {
        let now = Instant::now();
        if !budgets.take(peer, now) {
            debug!(peer = %peer.short(), %height, "block request over the peer's budget: dropped");
            continue;
        }
        let found = match store.block(height) {
            Ok(block) => store.commit(height).map(|commit| (block, commit)),
            Err(e) => Err(e),
        };
        match found {
            Ok((Some(block), Some(commit))) => net.send(
                &peer,
                NetMessage::Decided {
                    block: Arc::new(block),
                    commit,
                },
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, %height, "cannot read a requested block"),
        }
        served += 1;
        if served % 4096 == 0 {
            budgets.forget_idle(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Keypair;

    #[test]
    fn a_peer_gets_its_burst_then_its_rate() {
        let mut b = Budgets::new(4.0, 10.0);
        let p = Keypair::from_seed([1; 32]).public();
        let q = Keypair::from_seed([2; 32]).public();
        let t0 = Instant::now();
        for _ in 0..4 {
            assert!(b.take(p, t0));
        }
        assert!(!b.take(p, t0), "the burst is spent");
        // Another peer's budget is its own.
        assert!(b.take(q, t0));
        // A tenth of a second refills one request, not more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(p, t1));
        assert!(!b.take(p, t1));
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..4 {
            assert!(b.take(p, t2));
        }
        assert!(!b.take(p, t2));
    }
}
