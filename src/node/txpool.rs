//! The node's transaction intake: admission (cheap pool checks, then the
//! application's check, then the pool), gossip of admitted transactions, and the
//! pool's update after each block. Shared by the gRPC service and the consensus
//! actor.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};

use super::notify::CommitNotifier;
use crate::app::{AppError, Application, RejectCode, TxResult};
use crate::codec::decode_tx;
use crate::mempool::{Mempool, MempoolConfig, MempoolError};
use crate::metrics::NodeMetrics;
use crate::types::{Block, Hash, PublicKey};

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The application refused it.
    #[error("{reason}")]
    Rejected {
        /// Class of refusal.
        code: RejectCode,
        /// What is wrong.
        reason: String,
    },
    /// The pool refused it.
    #[error(transparent)]
    Pool(#[from] MempoolError),
    /// Too many submissions wait for admission; try again later.
    #[error("{queued} submissions are waiting for admission; try again later")]
    Busy {
        /// Submissions waiting.
        queued: usize,
    },
    /// Something failed that is not the transaction's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Most submissions waiting for admission before new ones are refused.
pub const MAX_QUEUED: usize = 20_000;

/// Most submissions admitted in one batch (one batch signature check).
const MAX_BATCH: usize = 512;

/// The answer to a queued submission: the transaction's hash once admitted.
pub type Answer = oneshot::Receiver<Result<Hash, SubmitError>>;

/// A submission waiting for admission.
struct Queued {
    bytes: Bytes,
    reply: oneshot::Sender<Result<Hash, SubmitError>>,
}

/// Submissions waiting, and whether a worker is admitting them.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Queued>,
    running: bool,
}

/// Clears the queue's `running` flag if the worker unwinds, so that a later
/// submission starts a new one instead of waiting forever. (A worker that ends
/// normally clears it itself, under the same lock that saw the queue empty: a
/// submission cannot slip in between and find no worker.)
struct PanicGuard<'a>(&'a Mutex<Queue>);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().running = false;
        }
    }
}

/// A copy of `bytes` in an allocation of its own. Decoded messages hand out
/// slices of their receive buffer (an 8 KiB gRPC request buffer, a gossip frame
/// of up to 4 MiB), and a slice keeps the whole buffer alive: a pool of 50,000
/// waiting transactions held that way pinned over 400 MB.
fn owned(bytes: Bytes) -> Bytes {
    Bytes::copy_from_slice(&bytes)
}

impl From<AppError> for SubmitError {
    fn from(e: AppError) -> SubmitError {
        match e {
            AppError::InvalidTx { code, reason, .. } => SubmitError::Rejected { code, reason },
            other => SubmitError::Internal(other.to_string()),
        }
    }
}

/// The shared intake.
pub struct TxPool {
    pool: Mutex<Mempool>,
    app: Arc<dyn Application>,
    gossip: mpsc::Sender<Bytes>,
    notifier: Arc<CommitNotifier>,
    metrics: Arc<NodeMetrics>,
    arrived: Notify,
    queue: Mutex<Queue>,
}

impl TxPool {
    /// A pool; admitted transactions to gossip are sent on `gossip`.
    pub fn new(
        cfg: MempoolConfig,
        app: Arc<dyn Application>,
        gossip: mpsc::Sender<Bytes>,
        notifier: Arc<CommitNotifier>,
        metrics: Arc<NodeMetrics>,
    ) -> TxPool {
        TxPool {
            pool: Mutex::new(Mempool::new(cfg)),
            app,
            gossip,
            notifier,
            metrics,
            arrived: Notify::new(),
            queue: Mutex::new(Queue::default()),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Mempool> {
        self.pool.lock()
    }

    /// The commit notifier.
    pub fn notifier(&self) -> &Arc<CommitNotifier> {
        &self.notifier
    }

    /// Resolves when a transaction was admitted since the last call.
    pub async fn arrived(&self) {
        self.arrived.notified().await
    }

    /// Admits one transaction from a client and gossips it, batched with the
    /// other submissions waiting: one blocking worker at a time takes them in
    /// arrival order, checks their signatures in one batch, then admits each.
    /// Under load that is one thread hand-off and one batch verification per
    /// batch instead of per transaction, and an account's submissions keep
    /// their order.
    pub async fn admit(self: &Arc<Self>, bytes: Bytes) -> Result<Hash, SubmitError> {
        self.enqueue(bytes)?
            .await
            .map_err(|_| SubmitError::Internal("the admission worker stopped".into()))?
    }

    /// Queues one transaction for admission as [`TxPool::admit`] does, without
    /// waiting: the answer comes on the returned receiver. Answers come in the
    /// order transactions were queued.
    pub fn enqueue(self: &Arc<Self>, bytes: Bytes) -> Result<Answer, SubmitError> {
        let bytes = owned(bytes);
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock();
            if q.waiting.len() >= MAX_QUEUED {
                return Err(SubmitError::Busy {
                    queued: q.waiting.len(),
                });
            }
            q.waiting.push_back(Queued { bytes, reply });
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.admit_waiting());
        }
        Ok(answer)
    }

    /// The admission worker: batches until the queue is empty.
    fn admit_waiting(&self) {
        let _guard = PanicGuard(&self.queue);
        loop {
            let batch: Vec<Queued> = {
                let mut q = self.queue.lock();
                if q.waiting.is_empty() {
                    q.running = false;
                    return;
                }
                let n = q.waiting.len().min(MAX_BATCH);
                q.waiting.drain(..n).collect()
            };
            let txs: Vec<Bytes> = batch.iter().map(|q| q.bytes.clone()).collect();
            self.app.preverify(&txs);
            for q in batch {
                // The client may have gone; its answer is then dropped.
                let _ = q.reply.send(self.submit(q.bytes, true));
            }
        }
    }

    /// Admits one transaction; gossips it to peers if `gossip`.
    pub fn submit(&self, bytes: Bytes, gossip: bool) -> Result<Hash, SubmitError> {
        let hash = Hash::digest(&bytes);
        self.lock().precheck(&hash, bytes.len())?;
        let meta = self.app.check_tx(&bytes)?;
        {
            let mut p = self.lock();
            p.insert(hash, bytes.clone(), &meta)?;
            self.metrics.mempool_size.set(p.len() as i64);
            self.metrics.mempool_bytes.set(p.bytes() as i64);
        }
        if gossip && self.gossip.try_send(bytes).is_err() {
            // Gossip is best effort: the transaction stays here until proposed.
            self.metrics.gossip_dropped.inc();
        }
        self.arrived.notify_one();
        Ok(hash)
    }

    /// Admits transactions gossiped by a peer; returns how many were refused
    /// for being invalid (duplicates and a full pool are not the peer's fault).
    pub fn submit_from_peer(&self, txs: Vec<Bytes>, relay: bool) -> usize {
        let txs: Vec<Bytes> = txs.into_iter().map(owned).collect();
        self.app.preverify(&txs);
        let mut invalid = 0;
        for tx in txs {
            if let Err(SubmitError::Rejected {
                code: RejectCode::Malformed | RejectCode::BadSignature | RejectCode::TooLarge,
                ..
            }) = self.submit(tx, relay)
            {
                invalid += 1;
            }
        }
        invalid
    }

    /// Whether transactions wait.
    pub fn has_pending(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Transactions for a proposal, oldest first.
    pub fn reap(&self, max_bytes: usize, max_txs: usize) -> Vec<Bytes> {
        self.lock().reap(max_bytes, max_txs)
    }

    /// After a committed (and durable) block: drop its transactions, re-check the
    /// rest, and tell waiting clients.
    pub fn after_block(&self, block: &Block, results: &[TxResult]) {
        let committed: Vec<(Hash, Option<PublicKey>)> = block
            .txs
            .iter()
            .map(|t| (Hash::digest(t), decode_tx(t).ok().map(|tx| tx.sender)))
            .collect();
        let evicted = {
            let mut p = self.lock();
            let ev = p.update(&committed, |bytes| {
                self.app.check_tx(bytes).map_err(|e| e.to_string())
            });
            self.metrics.mempool_size.set(p.len() as i64);
            self.metrics.mempool_bytes.set(p.bytes() as i64);
            ev
        };
        let with_results: Vec<(Hash, TxResult)> = committed
            .iter()
            .zip(results)
            .map(|((h, _), r)| (*h, r.clone()))
            .collect();
        self.notifier.committed(block.height(), &with_results);
        if !evicted.is_empty() {
            self.metrics.mempool_evicted.add(evicted.len() as u64);
            let list: Vec<(Hash, String)> =
                evicted.into_iter().map(|e| (e.hash, e.reason)).collect();
            tracing::debug!(
                count = list.len(),
                "transactions evicted from the mempool after re-check"
            );
            self.notifier.evicted(&list);
        }
    }
}
