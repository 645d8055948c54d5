//! The pre-signed transactions a run offers: signed before the timed window so
//! that the client's signing does not limit the result.
//!
//! Transaction `i` belongs to account `i mod A` with nonce `start + i / A`, so an
//! account's consecutive nonces are `A` transactions apart in the offering
//! order; each account always goes to the same node and connection, which keeps
//! its nonces in order at that node's mempool.

use std::collections::HashMap;

use bytes::Bytes;

use crate::app::ledger::{Action, Tx};
use crate::codec::Wire;
use crate::types::{Hash, Keypair};

/// What to sign.
#[derive(Clone, Debug)]
pub struct PoolSpec {
    /// Chain id the signatures are for.
    pub chain_id: String,
    /// Number of transactions.
    pub count: usize,
    /// Encoded size of each transaction, in bytes.
    pub tx_bytes: usize,
    /// Each transaction writes a record of its own (`r<nonce>`), so the state
    /// grows by one entry per transaction; otherwise every account rewrites one
    /// record and the state stays the same size.
    pub distinct_records: bool,
}

/// Signed transactions, their hashes, and where each goes.
pub struct PreSigned {
    /// Encoded transactions, in offering order.
    pub txs: Vec<Bytes>,
    /// Transaction hash -> index in `txs`.
    pub index: HashMap<Hash, u32>,
    /// Number of accounts used.
    pub accounts: usize,
}

impl PreSigned {
    /// The account of transaction `i`.
    pub fn account_of(&self, i: usize) -> usize {
        i % self.accounts
    }
}

/// How many accounts a pool of `count` transactions uses: enough that an
/// account's next nonce comes long after its previous one (at most 32 nonces
/// per account), few enough to keep the genesis small.
pub fn accounts_for(count: usize) -> usize {
    (count / 16).clamp(256, 50_000).min(count.max(1))
}

fn put(i: usize, nonce: u64, distinct: bool, value_len: usize) -> Action {
    let mut value = vec![0u8; value_len];
    // Distinct contents, cheap to make.
    for (j, b) in value.iter_mut().enumerate() {
        *b = (i.wrapping_mul(31).wrapping_add(j * 7) % 251) as u8;
    }
    Action::Put {
        name: if distinct {
            format!("r{nonce}")
        } else {
            "bench".to_string()
        },
        value: Bytes::from(value),
    }
}

/// The value length that makes transaction `i` encode to `target` bytes (or as
/// close as the encoding allows).
fn value_len_for(key: &Keypair, spec: &PoolSpec, i: usize, nonce: u64) -> usize {
    let size = |len: usize| {
        Tx::new_signed(
            key,
            &spec.chain_id,
            nonce,
            put(i, nonce, spec.distinct_records, len),
        )
        .encode()
        .len()
    };
    let mut len = spec.tx_bytes.saturating_sub(size(0));
    for _ in 0..4 {
        let got = size(len);
        if got == spec.tx_bytes {
            break;
        }
        len = if got > spec.tx_bytes {
            len.saturating_sub(got - spec.tx_bytes)
        } else {
            len + (spec.tx_bytes - got)
        };
    }
    len
}

/// Signs the pool with `keys` (every account starting at nonce `start_nonce`),
/// on every core.
pub fn presign(spec: &PoolSpec, keys: &[Keypair], start_nonce: u64) -> PreSigned {
    let accounts = keys.len().max(1);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let per = spec.count.div_ceil(threads).max(1);
    let mut parts: Vec<Vec<(Bytes, Hash)>> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let from = (t * per).min(spec.count);
                    let to = ((t + 1) * per).min(spec.count);
                    let mut out = Vec::with_capacity(to - from);
                    let mut value_len = None;
                    for i in from..to {
                        let key = &keys[i % accounts];
                        let nonce = start_nonce + (i / accounts) as u64;
                        let len =
                            *value_len.get_or_insert_with(|| value_len_for(key, spec, i, nonce));
                        let tx = Tx::new_signed(
                            key,
                            &spec.chain_id,
                            nonce,
                            put(i, nonce, spec.distinct_records, len),
                        );
                        let bytes = Bytes::from(tx.encode());
                        let hash = Tx::hash_of(&bytes);
                        out.push((bytes, hash));
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            parts.push(h.join().unwrap_or_default());
        }
    });
    let mut txs = Vec::with_capacity(spec.count);
    let mut index = HashMap::with_capacity(spec.count);
    for (bytes, hash) in parts.into_iter().flatten() {
        index.insert(hash, txs.len() as u32);
        txs.push(bytes);
    }
    PreSigned {
        txs,
        index,
        accounts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_tx;

    #[test]
    fn signs_valid_transactions_of_the_requested_size_in_nonce_order() {
        let keys: Vec<Keypair> = (0..3u8).map(|i| Keypair::from_seed([i + 1; 32])).collect();
        let spec = PoolSpec {
            chain_id: "c".into(),
            count: 10,
            tx_bytes: 256,
            distinct_records: true,
        };
        let p = presign(&spec, &keys, 5);
        assert_eq!(p.txs.len(), 10);
        assert_eq!(p.index.len(), 10);
        for (i, b) in p.txs.iter().enumerate() {
            assert_eq!(b.len(), 256, "transaction {i}");
            let tx = decode_tx(b).unwrap();
            tx.verify("c").unwrap();
            assert_eq!(tx.sender, keys[p.account_of(i)].public());
            assert_eq!(tx.nonce, 5 + (i / 3) as u64);
            assert_eq!(p.index[&Tx::hash_of(b)], i as u32);
        }
        assert_eq!(accounts_for(1_000_000), 50_000);
        assert_eq!(accounts_for(100), 100);
    }
}
