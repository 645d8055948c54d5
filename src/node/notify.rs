//! Telling waiting clients about commits: per-transaction waiters (Submit in
//! COMMITTED mode) and the latest committed height (block and result streams).

use std::collections::HashMap;
use std::sync::Mutex;

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

/// Waiters and the committed height.
#[derive(Debug)]
pub struct CommitNotifier {
    waiters: Mutex<HashMap<Hash, Vec<oneshot::Sender<TxOutcome>>>>,
    latest: watch::Sender<Height>,
}

impl CommitNotifier {
    /// A notifier starting at `height`.
    pub fn new(height: Height) -> CommitNotifier {
        CommitNotifier {
            waiters: Mutex::new(HashMap::new()),
            latest: watch::channel(height).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Hash, Vec<oneshot::Sender<TxOutcome>>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers interest in `hash`; register before submitting, so that a
    /// commit cannot slip in between.
    pub fn wait_for(&self, hash: Hash) -> oneshot::Receiver<TxOutcome> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(hash).or_default().push(tx);
        rx
    }

    /// Drops the waiters of `hash` (the submission was refused).
    pub fn forget(&self, hash: &Hash) {
        self.lock().remove(hash);
    }

    /// A block was committed durably: wake its transactions' waiters and the
    /// streams.
    pub fn committed(&self, height: Height, txs: &[(Hash, TxResult)]) {
        {
            let mut w = self.lock();
            if !w.is_empty() {
                for (i, (h, r)) in txs.iter().enumerate() {
                    if let Some(senders) = w.remove(h) {
                        for s in senders {
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
                    v.retain(|s| !s.is_closed());
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
                for s in senders {
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
            wa.await.unwrap(),
            TxOutcome::Committed {
                height: Height(3),
                index: 1,
                result: ok
            }
        );
        n.evicted(&[(b, "stale".into())]);
        assert_eq!(
            wb.await.unwrap(),
            TxOutcome::Evicted {
                reason: "stale".into()
            }
        );
        heights.changed().await.unwrap();
        assert_eq!(*heights.borrow(), Height(3));
    }
}
