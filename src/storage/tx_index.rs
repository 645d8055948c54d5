//! The transaction index: where each committed transaction is, by hash.
//!
//! Layout (tree `txindex`): transaction hash (32 bytes) -> height (8 bytes) and
//! position (4 bytes), big-endian; the empty key holds the highest indexed
//! height. The index is derived from the block log and written without a flush;
//! after a crash [`TxIndexStore::index_missing_txs`] rebuilds what was lost.

use super::StorageError;
use super::engine::{Engine, TreeId};
use super::kv_store::KvStore;
use crate::types::{Hash, Height};

/// Looking up committed transactions by hash.
pub trait TxIndexStore: Send + Sync + 'static {
    /// Indexes the transactions (by hash, in block order) of block `height`.
    fn index_txs(&self, height: Height, hashes: &[Hash]) -> Result<(), StorageError>;

    /// Height and position of a committed transaction.
    fn locate_tx(&self, hash: &Hash) -> Result<Option<(Height, u32)>, StorageError>;

    /// Indexes stored blocks above the indexed height (after a crash).
    fn index_missing_txs(&self) -> Result<(), StorageError>;
}

fn corrupt(reason: &str) -> StorageError {
    StorageError::Corrupt {
        what: "transaction index",
        key: String::new(),
        reason: reason.to_string(),
    }
}

impl<E: Engine> KvStore<E> {
    pub(super) fn index_txs(&self, height: Height, hashes: &[Hash]) -> Result<(), StorageError> {
        let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let mut v = height.0.to_be_bytes().to_vec();
                v.extend_from_slice(&(i as u32).to_be_bytes());
                (h.as_bytes().to_vec(), Some(v))
            })
            .collect();
        ops.push((Vec::new(), Some(height.0.to_be_bytes().to_vec())));
        self.engine.apply(TreeId::TxIndex, &ops)
    }

    pub(super) fn locate_tx(&self, hash: &Hash) -> Result<Option<(Height, u32)>, StorageError> {
        let Some(v) = self.engine.get(TreeId::TxIndex, hash.as_bytes())? else {
            return Ok(None);
        };
        if v.len() != 12 {
            return Err(corrupt("entry is not 12 bytes"));
        }
        let mut h = [0u8; 8];
        h.copy_from_slice(&v[..8]);
        let mut i = [0u8; 4];
        i.copy_from_slice(&v[8..]);
        Ok(Some((Height(u64::from_be_bytes(h)), u32::from_be_bytes(i))))
    }

    /// Indexes the blocks of `log` above this index's height.
    pub(super) fn index_missing_txs<L: Engine>(
        &self,
        log: &KvStore<L>,
    ) -> Result<(), StorageError> {
        let indexed = match self.engine.get(TreeId::TxIndex, &[])? {
            Some(v) => {
                let b: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("indexed height is not 8 bytes"))?;
                u64::from_be_bytes(b)
            }
            None => 0,
        };
        let from = (indexed + 1).max(log.base_height().0);
        for h in from..=log.latest_height().0 {
            if let Some(b) = log.block(Height(h))? {
                let hashes: Vec<Hash> = b.txs.iter().map(|t| Hash::digest(t)).collect();
                self.index_txs(Height(h), &hashes)?;
            }
        }
        Ok(())
    }
}

macro_rules! impl_tx_index {
    ($store:ty) => {
        impl $crate::storage::TxIndexStore for $store {
            fn index_txs(
                &self,
                height: $crate::types::Height,
                hashes: &[$crate::types::Hash],
            ) -> Result<(), $crate::storage::StorageError> {
                self.aux.index_txs(height, hashes)
            }

            fn locate_tx(
                &self,
                hash: &$crate::types::Hash,
            ) -> Result<Option<($crate::types::Height, u32)>, $crate::storage::StorageError> {
                self.aux.locate_tx(hash)
            }

            fn index_missing_txs(&self) -> Result<(), $crate::storage::StorageError> {
                self.aux.index_missing_txs(&self.inner)
            }
        }
    };
}

pub(super) use impl_tx_index;
