//! The mempool: transactions admitted and waiting for a block.
//!
//! Pure pool logic (no I/O): bounded by count and bytes, deduplicated by hash
//! (with a cache of recently committed hashes), per-sender nonces kept
//! consecutive, first come first served when reaping a proposal. A full pool
//! refuses (the API answers RESOURCE_EXHAUSTED); nothing is dropped without the
//! caller being told which transactions left and why.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;

use crate::app::TxMeta;
use crate::types::{Hash, PublicKey};

/// Limits of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most bytes held.
    pub max_bytes: usize,
    /// Recently committed hashes remembered to refuse duplicates.
    pub recent_cache: usize,
}

impl Default for MempoolConfig {
    fn default() -> MempoolConfig {
        MempoolConfig {
            max_txs: 50_000,
            max_bytes: 64 * 1024 * 1024,
            recent_cache: 200_000,
        }
    }
}

/// Why a transaction is not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// The pool holds its maximum count or bytes.
    #[error("mempool is full ({txs} transactions, {bytes} bytes)")]
    Full {
        /// Transactions held.
        txs: usize,
        /// Bytes held.
        bytes: usize,
    },
    /// The same transaction is already waiting.
    #[error("transaction already in the mempool")]
    Duplicate,
    /// The same transaction was committed recently.
    #[error("transaction already committed")]
    AlreadyCommitted,
    /// The sender already has a waiting transaction with this nonce.
    #[error("nonce {nonce} of this sender is already pending")]
    NonceTaken {
        /// The nonce.
        nonce: u64,
    },
    /// The nonce skips ahead of the sender's next one.
    #[error("nonce {got} is ahead of the sender's next nonce {expected}")]
    FutureNonce {
        /// The next nonce the pool accepts for this sender.
        expected: u64,
        /// The nonce given.
        got: u64,
    },
}

#[derive(Clone, Debug)]
struct PoolTx {
    hash: Hash,
    bytes: Bytes,
    sender: Option<(PublicKey, u64)>,
}

/// Why a transaction left the pool without being committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    /// The transaction.
    pub hash: Hash,
    /// Why.
    pub reason: String,
}

/// The pool.
#[derive(Debug)]
pub struct Mempool {
    cfg: MempoolConfig,
    /// Arrival order: sequence number -> transaction.
    queue: BTreeMap<u64, PoolTx>,
    by_hash: HashMap<Hash, u64>,
    /// Per sender: nonce -> sequence number of its waiting transactions.
    senders: HashMap<PublicKey, BTreeMap<u64, u64>>,
    next_seq: u64,
    bytes: usize,
    recent: HashSet<Hash>,
    recent_order: VecDeque<Hash>,
}

impl Mempool {
    /// An empty pool.
    pub fn new(cfg: MempoolConfig) -> Mempool {
        Mempool {
            cfg,
            queue: BTreeMap::new(),
            by_hash: HashMap::new(),
            senders: HashMap::new(),
            next_seq: 0,
            bytes: 0,
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
        }
    }

    /// Transactions waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `hash` waits in the pool.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Cheap checks before the application's: duplicate, recently committed, room.
    pub fn precheck(&self, hash: &Hash, size: usize) -> Result<(), MempoolError> {
        if self.by_hash.contains_key(hash) {
            return Err(MempoolError::Duplicate);
        }
        if self.recent.contains(hash) {
            return Err(MempoolError::AlreadyCommitted);
        }
        if self.queue.len() >= self.cfg.max_txs || self.bytes + size > self.cfg.max_bytes {
            return Err(MempoolError::Full {
                txs: self.queue.len(),
                bytes: self.bytes,
            });
        }
        Ok(())
    }

    /// The nonce the pool accepts next from `sender` given its committed nonce.
    pub fn next_nonce(&self, sender: &PublicKey, committed_nonce: u64) -> u64 {
        match self.senders.get(sender).and_then(|m| m.keys().next_back()) {
            Some(last) => (last + 1).max(committed_nonce),
            None => committed_nonce,
        }
    }

    /// Admits a transaction that passed the application's check.
    pub fn insert(&mut self, hash: Hash, bytes: Bytes, meta: &TxMeta) -> Result<(), MempoolError> {
        self.precheck(&hash, bytes.len())?;
        if let Some((sender, nonce)) = meta.sender {
            let expected = self.next_nonce(&sender, meta.committed_nonce);
            if nonce < expected {
                return Err(MempoolError::NonceTaken { nonce });
            }
            if nonce > expected {
                return Err(MempoolError::FutureNonce {
                    expected,
                    got: nonce,
                });
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some((sender, nonce)) = meta.sender {
            self.senders.entry(sender).or_default().insert(nonce, seq);
        }
        self.bytes += bytes.len();
        self.by_hash.insert(hash, seq);
        self.queue.insert(
            seq,
            PoolTx {
                hash,
                bytes,
                sender: meta.sender,
            },
        );
        Ok(())
    }

    /// The oldest transactions that fit in `max_bytes` and `max_txs`, in arrival
    /// order (which keeps each sender's nonces in order).
    pub fn reap(&self, max_bytes: usize, max_txs: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut size = 0;
        for tx in self.queue.values() {
            if out.len() >= max_txs {
                break;
            }
            if size + tx.bytes.len() > max_bytes {
                break;
            }
            size += tx.bytes.len();
            out.push(tx.bytes.clone());
        }
        out
    }

    fn remove_seq(&mut self, seq: u64) -> Option<PoolTx> {
        let tx = self.queue.remove(&seq)?;
        self.by_hash.remove(&tx.hash);
        self.bytes -= tx.bytes.len();
        if let Some((sender, nonce)) = tx.sender {
            if let Some(m) = self.senders.get_mut(&sender) {
                m.remove(&nonce);
                if m.is_empty() {
                    self.senders.remove(&sender);
                }
            }
        }
        Some(tx)
    }

    fn remember_committed(&mut self, hash: Hash) {
        if self.recent.insert(hash) {
            self.recent_order.push_back(hash);
            while self.recent_order.len() > self.cfg.recent_cache {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    /// After a block: drops its transactions, remembers their hashes, and
    /// re-checks with `recheck` (the application's check against the new state)
    /// the waiting transactions of every sender that has a transaction in the
    /// block: only its own transactions lower an account's nonce or balance.
    /// `committed` lists each block transaction's hash and sender. Returns the
    /// transactions that no longer pass, removed.
    pub fn update<F>(&mut self, committed: &[(Hash, Option<PublicKey>)], recheck: F) -> Vec<Evicted>
    where
        F: Fn(&[u8]) -> Result<TxMeta, String>,
    {
        let mut touched: HashSet<PublicKey> = HashSet::new();
        for (h, sender) in committed {
            if let Some(seq) = self.by_hash.get(h).copied() {
                self.remove_seq(seq);
            }
            if let Some(s) = sender {
                touched.insert(*s);
            }
            self.remember_committed(*h);
        }
        let mut evicted = Vec::new();
        for s in touched {
            let Some(seqs) = self.senders.get(&s) else {
                continue;
            };
            let order: Vec<u64> = seqs.values().copied().collect();
            let mut expected: Option<u64> = None;
            for seq in order {
                let Some(tx) = self.queue.get(&seq) else {
                    continue;
                };
                let verdict = match recheck(&tx.bytes) {
                    Err(e) => Err(e),
                    Ok(meta) => {
                        let nonce = meta.sender.map_or(0, |(_, n)| n);
                        let want = expected.unwrap_or(meta.committed_nonce);
                        if nonce == want {
                            expected = Some(want + 1);
                            Ok(())
                        } else if nonce < want {
                            Err(format!("nonce {nonce} was used by a committed transaction"))
                        } else {
                            Err(format!("nonce {nonce} no longer follows {want}"))
                        }
                    }
                };
                if let Err(reason) = verdict {
                    if let Some(tx) = self.remove_seq(seq) {
                        evicted.push(Evicted {
                            hash: tx.hash,
                            reason,
                        });
                    }
                }
            }
        }
        evicted
    }
}

#[cfg(test)]
mod tests;
