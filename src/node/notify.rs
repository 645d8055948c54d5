//! Telling waiting clients about commits: per-transaction waiters (Submit in
//! COMMITTED mode) and the latest committed height (block and result streams).

use parking_lot::Mutex;
use std::collections::HashMap;

use tokio::sync::{oneshot, watch};

use crate::app::TxResult;
use crate::types::{Hash, Height};

/// What became of a submitted transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// Committed (durably) in a block.
    Committed {
        /// The block's height.
        height: Height,
        /// Position in the block.
        index: u32,
        /// Its result.
        result: TxResult,
    },
    /// Removed from the mempool without being committed.
    Evicted {
        /// Why.
        reason: String,
    },
}

/// One client's registration for a transaction's outcome.
#[derive(Debug)]
pub struct Waiter {
    /// The transaction waited for.
    pub hash: Hash,
    /// Which registration this is, among those for the same hash.
    id: u64,
    /// Where the outcome arrives.
    pub outcome: oneshot::Receiver<TxOutcome>,
}

type Senders = Vec<(u64, oneshot::Sender<TxOutcome>)>;

/// Waiters and the committed height.
#[derive(Debug)]
pub struct CommitNotifier {
    waiters: Mutex<HashMap<Hash, Senders>>,
    next_id: std::sync::atomic::AtomicU64,
    latest: watch::Sender<Height>,
}

impl CommitNotifier {
    /// A notifier starting at `height`.
    pub fn new(height: Height) -> CommitNotifier {
        CommitNotifier {
            waiters: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
            latest: watch::channel(height).0,
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<Hash, Senders>> {
        self.waiters.lock()
    }

    /// Registers interest in `hash`; register before submitting, so that a
    /// commit cannot slip in between.
    pub fn wait_for(&self, hash: Hash) -> Waiter {
        let (tx, rx) = oneshot::channel();
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().entry(hash).or_default().push((id, tx));
        Waiter {
            hash,
            id,
            outcome: rx,
        }
    }

    /// Drops one registration (its submission was refused). Other clients
    /// waiting for the same transaction (it may be an honest retry of theirs
    /// that was refused as a duplicate) keep theirs.
    pub fn forget(&self, waiter: Waiter) {
        let mut w = self.lock();
        if let Some(senders) = w.get_mut(&waiter.hash) {
            senders.retain(|(id, _)| *id != waiter.id);
            if senders.is_empty() {
                w.remove(&waiter.hash);
            }
        }
    }

    /// A block was committed durably: wake its transactions' waiters and the
    /// streams.
    pub fn committed(&self, height: Height, txs: &[(Hash, TxResult)]) {
        {
            let mut w = self.lock();
            if !w.is_empty() {
                for (i, (h, r)) in txs.iter().enumerate() {
                    if let Some(senders) = w.remove(h) {
                        for (_, s) in senders {
                            let _ = s.send(TxOutcome::Committed {
                                height,
                                index: i as u32,
                                result: r.clone(),
                            });
                        }
                    }
                }
            }
            // Waiters whose client went away.
            if w.len() > 4096 {
                w.retain(|_, v| {
                    v.retain(|(_, s)| !s.is_closed());
                    !v.is_empty()
                });
            }
        }
        self.latest.send_replace(height);
    }

    /// Transactions left the mempool uncommitted.
    pub fn evicted(&self, evicted: &[(Hash, String)]) {
        let mut w = self.lock();
        for (h, reason) in evicted {
            if let Some(senders) = w.remove(h) {
                for (_, s) in senders {
                    let _ = s.send(TxOutcome::Evicted {
                        reason: reason.clone(),
                    });
                }
            }
        }
    }

    /// The committed height, updated after each block.
    pub fn heights(&self) -> watch::Receiver<Height> {
        self.latest.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_learn_commit_or_eviction() {
        let n = CommitNotifier::new(Height(0));
        let a = Hash::digest(b"a");
        let b = Hash::digest(b"b");
        let wa = n.wait_for(a);
        let wb = n.wait_for(b);
        let mut heights = n.heights();
        let ok = TxResult {
            code: 0,
            log: String::new(),
            events: vec![],
        };
        n.committed(
            Height(3),
            &[(Hash::digest(b"x"), ok.clone()), (a, ok.clone())],
        );
        assert_eq!(
            wa.outcome.await.unwrap(),
            TxOutcome::Committed {
                height: Height(3),
                index: 1,
                result: ok
            }
        );
        n.evicted(&[(b, "stale".into())]);
        assert_eq!(
            wb.outcome.await.unwrap(),
            TxOutcome::Evicted {
                reason: "stale".into()
            }
        );
        heights.changed().await.unwrap();
        assert_eq!(*heights.borrow(), Height(3));
    }

    #[tokio::test]
    async fn a_refused_retry_keeps_the_other_waiters() {
        let n = CommitNotifier::new(Height(0));
        let a = Hash::digest(b"a");
        let first = n.wait_for(a);
        let retry = n.wait_for(a);
        // The retry was refused (say, as a duplicate): only it goes.
        n.forget(retry);
        let ok = TxResult {
            code: 0,
            log: String::new(),
            events: vec![],
        };
        n.committed(Height(1), &[(a, ok.clone())]);
        assert_eq!(
            first.outcome.await.unwrap(),
            TxOutcome::Committed {
                height: Height(1),
                index: 0,
                result: ok
            }
        );
    }
}
