//! The application state tree: entries ordered by key hash, with the height
//! whose changes were applied last.
//!
//! Layout (tree `state`): key hash (32 bytes) -> u32 key length, key, value; the
//! empty key holds the applied height (8 bytes, big-endian), written in the same
//! batch as the changes of that height.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::StorageError;
use super::engine::{Engine, TreeId};
use super::kv_store::KvStore;
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
    /// SHA-256 of the key: the entry's position in the state tree.
    pub fn kh(&self) -> Hash {
        Hash::digest(&self.key)
    }

    /// SHA-256 of the value.
    pub fn value_hash(&self) -> Hash {
        Hash::digest(&self.value)
    }
}

/// A state change: the entry under a key hash set or removed.
pub type Change = (Hash, Option<Entry>);

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The storage under the state failed.
    #[error("state store: {0}")]
    Storage(#[from] StorageError),
    /// What is stored, or was asked of it, does not hold together.
    #[error("state store: {0}")]
    Invalid(String),
}

/// The committed state: entries ordered by key hash.
pub trait StateBackend: Send + Sync + 'static {
    /// The entry under `kh`.
    fn get(&self, kh: &Hash) -> Result<Option<Entry>, StateError>;

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

    /// Makes every write so far durable (a checkpoint: after a crash, only the
    /// changes of later heights are replayed from the block log).
    fn flush(&self) -> Result<(), StateError>;

    /// Which chunks of a snapshot restore are written (one byte each), as last
    /// set; empty if none was.
    fn restore_progress(&self) -> Result<Vec<u8>, StateError>;

    /// Sets the restore progress, durable at the next [`StateBackend::flush`].
    /// It is kept with the state it describes so that one flush makes a
    /// chunk's entries and its mark durable together.
    fn set_restore_progress(&self, done: &[u8]) -> Result<(), StateError>;
}

/// Metadata key of the restore progress, beside the state tree.
const RESTORE_PROGRESS_KEY: &[u8] = b"restore/done";

/// First key hash of a bucket (its two-byte prefix).
pub fn bucket_start(bucket: usize) -> Hash {
    let mut h = [0u8; 32];
    h[0] = (bucket >> 8) as u8;
    h[1] = bucket as u8;
    Hash(h)
}

fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + e.key.len() + e.value.len());
    v.extend_from_slice(&(e.key.len() as u32).to_be_bytes());
    v.extend_from_slice(&e.key);
    v.extend_from_slice(&e.value);
    v
}

fn decode_entry(kh: &[u8], b: &[u8]) -> Result<(Hash, Entry), StateError> {
    let corrupt = |why: &str| StateError::Invalid(format!("corrupt state entry: {why}"));
    let kh = Hash::from_slice(kh).map_err(|_| corrupt("key is not a hash"))?;
    let len = b.get(..4).ok_or_else(|| corrupt("truncated"))?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let key = b
        .get(4..4 + len)
        .ok_or_else(|| corrupt("truncated key"))?
        .to_vec();
    let value = b[4 + len..].to_vec();
    Ok((kh, Entry { key, value }))
}

/// The state tree of a store.
pub(super) struct StateTree<E> {
    pub(super) inner: Arc<KvStore<E>>,
}

impl<E: Engine> StateBackend for StateTree<E> {
    fn get(&self, kh: &Hash) -> Result<Option<Entry>, StateError> {
        match self.inner.engine.get(TreeId::State, kh.as_bytes())? {
            Some(v) => decode_entry(kh.as_bytes(), &v).map(|(_, e)| Some(e)),
            None => Ok(None),
        }
    }

    fn apply(&self, height: Height, changes: &[Change]) -> Result<(), StateError> {
        let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = changes
            .iter()
            .map(|(kh, e)| (kh.as_bytes().to_vec(), e.as_ref().map(encode_entry)))
            .collect();
        ops.push((Vec::new(), Some(height.0.to_be_bytes().to_vec())));
        self.inner.engine.apply(TreeId::State, &ops)?;
        Ok(())
    }

    fn applied_height(&self) -> Result<Height, StateError> {
        match self.inner.engine.get(TreeId::State, &[])? {
            Some(v) => {
                let b: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| StateError::Invalid("corrupt applied height".into()))?;
                Ok(Height(u64::from_be_bytes(b)))
            }
            None => Ok(Height(0)),
        }
    }

    fn range(&self, from: &Hash, limit: usize) -> Result<Vec<(Hash, Entry)>, StateError> {
        self.inner
            .engine
            .scan_limit(TreeId::State, from.as_bytes(), &[0xff; 33], limit)?
            .into_iter()
            .map(|(k, v)| decode_entry(&k, &v))
            .collect()
    }

    fn flush(&self) -> Result<(), StateError> {
        Ok(self.inner.engine.flush()?)
    }

    fn restore_progress(&self) -> Result<Vec<u8>, StateError> {
        Ok(self
            .inner
            .engine
            .get(TreeId::Meta, RESTORE_PROGRESS_KEY)?
            .unwrap_or_default())
    }

    fn set_restore_progress(&self, done: &[u8]) -> Result<(), StateError> {
        Ok(self
            .inner
            .engine
            .insert(TreeId::Meta, RESTORE_PROGRESS_KEY, done)?)
    }

    fn clear(&self) -> Result<(), StateError> {
        loop {
            let keys: Vec<Vec<u8>> = self
                .inner
                .engine
                .scan_limit(TreeId::State, &[], &[0xff; 33], 10_000)?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            if keys.is_empty() {
                return Ok(());
            }
            self.inner.engine.remove_all(TreeId::State, &keys)?;
        }
    }
}

/// The state in memory alone, for tests of the application.
#[derive(Debug, Default)]
pub struct MemBackend {
    inner: RwLock<(BTreeMap<Hash, Entry>, Height)>,
    restore_progress: parking_lot::Mutex<Vec<u8>>,
}

impl MemBackend {
    fn read(&self) -> parking_lot::RwLockReadGuard<'_, (BTreeMap<Hash, Entry>, Height)> {
        self.inner.read()
    }

    fn write(&self) -> parking_lot::RwLockWriteGuard<'_, (BTreeMap<Hash, Entry>, Height)> {
        self.inner.write()
    }
}

impl StateBackend for MemBackend {
    fn get(&self, kh: &Hash) -> Result<Option<Entry>, StateError> {
        Ok(self.read().0.get(kh).cloned())
    }

    fn apply(&self, height: Height, changes: &[Change]) -> Result<(), StateError> {
        let mut g = self.write();
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

    fn range(&self, from: &Hash, limit: usize) -> Result<Vec<(Hash, Entry)>, StateError> {
        Ok(self
            .read()
            .0
            .range(*from..)
            .take(limit)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }

    fn flush(&self) -> Result<(), StateError> {
        Ok(())
    }

    fn restore_progress(&self) -> Result<Vec<u8>, StateError> {
        Ok(self.restore_progress.lock().clone())
    }

    fn set_restore_progress(&self, done: &[u8]) -> Result<(), StateError> {
        *self.restore_progress.lock() = done.to_vec();
        Ok(())
    }

    fn clear(&self) -> Result<(), StateError> {
        let mut g = self.write();
        g.0.clear();
        g.1 = Height(0);
        Ok(())
    }
}
