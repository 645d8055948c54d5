//! A minimal application: its state root chains the hashes of all transactions.
//! Useful to test consensus and storage without any transaction semantics.

use parking_lot::Mutex;

use bytes::Bytes;

use super::{AppError, Application, Execution, QueryResult, RejectCode, TxMeta, TxResult};
use crate::types::{Hash, Height, merkle};

/// Largest transaction the hash chain accepts.
pub const MAX_TX_BYTES: usize = 64 * 1024;

/// State root `r_h = SHA-256(r_{h-1} || height || merkle root of the txs)`.
#[derive(Debug)]
pub struct HashChainApp {
    state: Mutex<(Height, Hash)>,
}

impl HashChainApp {
    /// Starts from `genesis_root` at height 0.
    pub fn new(genesis_root: Hash) -> HashChainApp {
        HashChainApp {
            state: Mutex::new((Height(0), genesis_root)),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, (Height, Hash)> {
        // A poisoned lock means a panic elsewhere; the value itself is always whole.
        self.state.lock()
    }
}

impl Application for HashChainApp {
    fn committed(&self) -> (Height, Hash) {
        *self.lock()
    }

    fn check_tx(&self, tx: &[u8]) -> Result<TxMeta, AppError> {
        if tx.is_empty() || tx.len() > MAX_TX_BYTES {
            return Err(AppError::InvalidTx {
                index: 0,
                code: RejectCode::TooLarge,
                reason: format!("size {} outside 1..={MAX_TX_BYTES}", tx.len()),
            });
        }
        Ok(TxMeta {
            sender: None,
            committed_nonce: 0,
        })
    }

    fn query(&self, _key: &[u8]) -> Result<QueryResult, AppError> {
        Err(AppError::Internal(
            "the hash-chain application holds no queryable state".into(),
        ))
    }

    fn execute(&self, height: Height, txs: &[Bytes]) -> Result<Execution, AppError> {
        let (h, root) = *self.lock();
        if height != h.next() {
            return Err(AppError::WrongHeight {
                expected: h.next(),
                got: height,
            });
        }
        for (i, tx) in txs.iter().enumerate() {
            self.check_tx(tx).map_err(|e| match e {
                AppError::InvalidTx { code, reason, .. } => AppError::InvalidTx {
                    index: i,
                    code,
                    reason,
                },
                other => other,
            })?;
        }
        let app_hash = Hash::digest_parts(&[
            root.as_bytes(),
            &height.0.to_be_bytes(),
            merkle::root(txs).as_bytes(),
        ]);
        Ok(Execution {
            height,
            app_hash,
            results: txs
                .iter()
                .map(|_| TxResult {
                    code: 0,
                    log: String::new(),
                    events: vec![],
                })
                .collect(),
            delta: app_hash.as_bytes().to_vec(),
        })
    }

    fn commit(&self, exec: &Execution) -> Result<(), AppError> {
        let mut s = self.lock();
        if exec.height != s.0.next() {
            return Err(AppError::WrongHeight {
                expected: s.0.next(),
                got: exec.height,
            });
        }
        *s = (exec.height, exec.app_hash);
        Ok(())
    }

    fn replay(&self, height: Height, delta: &[u8]) -> Result<Hash, AppError> {
        let root = Hash::from_slice(delta)
            .map_err(|e| AppError::Internal(format!("bad delta at height {height}: {e}")))?;
        let mut s = self.lock();
        if height != s.0.next() && s.0 != Height(0) {
            return Err(AppError::WrongHeight {
                expected: s.0.next(),
                got: height,
            });
        }
        *s = (height, root);
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_is_pure_until_commit() {
        let app = HashChainApp::new(Hash::ZERO);
        let txs = vec![Bytes::from_static(b"a")];
        let e1 = app.execute(Height(1), &txs).unwrap();
        let e2 = app.execute(Height(1), &txs).unwrap();
        assert_eq!(e1.app_hash, e2.app_hash);
        assert_eq!(app.committed(), (Height(0), Hash::ZERO));
        app.commit(&e1).unwrap();
        assert_eq!(app.committed(), (Height(1), e1.app_hash));
        assert!(app.execute(Height(3), &txs).is_err());
        assert!(app.execute(Height(2), &[Bytes::new()]).is_err());
        let replayed = HashChainApp::new(Hash::ZERO);
        assert_eq!(replayed.replay(Height(1), &e1.delta).unwrap(), e1.app_hash);
    }
}
