//! Where the committed state lives: an ordered map from key hash to entry.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::smt::{BUCKET_BITS, Leaf, leaf_hash};
use crate::types::{Hash, Height};

/// A state entry: the application's key and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key (as the application builds it).
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

impl Entry {
    /// SHA-256 of the key: the entry's position in the tree.
    pub fn kh(&self) -> Hash {
        Hash::digest(&self.key)
    }

    /// SHA-256 of the value.
    pub fn value_hash(&self) -> Hash {
        Hash::digest(&self.value)
    }

    /// The entry as a tree leaf.
    pub fn leaf(&self, kh: Hash) -> Leaf {
        Leaf {
            kh,
            hash: leaf_hash(&kh, &self.value_hash()),
        }
    }
}

/// A state change: the entry under a key hash set or removed.
pub type Change = (Hash, Option<Entry>);

/// Why the state store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state store: {0}")]
pub struct StateError(pub String);

/// The committed state: entries ordered by key hash.
pub trait StateBackend: Send + Sync + 'static {
    /// The entry under `kh`.
    fn get(&self, kh: &Hash) -> Result<Option<Entry>, StateError>;

    /// Every entry of bucket `b` (the key hashes starting with `b`'s
    /// [`BUCKET_BITS`] bits), sorted by key hash.
    fn bucket(&self, b: usize) -> Result<Vec<(Hash, Entry)>, StateError>;

    /// Applies the changes of block `height` and records `height` as applied, in
    /// one atomic write. Need not be durable: the block log is, and changes above
    /// [`StateBackend::applied_height`] are replayed from it after a crash.
    fn apply(&self, height: Height, changes: &[Change]) -> Result<(), StateError>;

    /// The height whose changes were applied last.
    fn applied_height(&self) -> Result<Height, StateError>;

    /// Up to `limit` entries with key hash at or after `from`, in order.
    fn range(&self, from: &Hash, limit: usize) -> Result<Vec<(Hash, Entry)>, StateError>;

    /// Removes every entry and the applied height (before restoring a snapshot).
    fn clear(&self) -> Result<(), StateError>;
}

/// First key hash of bucket `b`.
pub fn bucket_start(b: usize) -> Hash {
    let mut h = [0u8; 32];
    let v = (b as u32) << (32 - BUCKET_BITS);
    h[..4].copy_from_slice(&v.to_be_bytes());
    Hash(h)
}

/// The state in memory, for tests.
#[derive(Debug, Default)]
pub struct MemBackend {
    inner: RwLock<(BTreeMap<Hash, Entry>, Height)>,
}

impl MemBackend {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, (BTreeMap<Hash, Entry>, Height)> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl StateBackend for MemBackend {
    fn get(&self, kh: &Hash) -> Result<Option<Entry>, StateError> {
        Ok(self.read().0.get(kh).cloned())
    }

    fn bucket(&self, b: usize) -> Result<Vec<(Hash, Entry)>, StateError> {
        let start = bucket_start(b);
        let g = self.read();
        Ok(g.0
            .range(start..)
            .take_while(|(kh, _)| super::smt::bucket_of(kh) == b)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }

    fn apply(&self, height: Height, changes: &[Change]) -> Result<(), StateError> {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for (kh, e) in changes {
            match e {
                Some(e) => {
                    g.0.insert(*kh, e.clone());
                }
                None => {
                    g.0.remove(kh);
                }
            }
        }
        g.1 = height;
        Ok(())
    }

    fn applied_height(&self) -> Result<Height, StateError> {
        Ok(self.read().1)
    }

    fn clear(&self) -> Result<(), StateError> {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.0.clear();
        g.1 = Height(0);
        Ok(())
    }

    fn range(&self, from: &Hash, limit: usize) -> Result<Vec<(Hash, Entry)>, StateError> {
        Ok(self
            .read()
            .0
            .range(*from..)
            .take(limit)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }
}
