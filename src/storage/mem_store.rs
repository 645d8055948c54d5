//! The in-memory store, for tests and the simulator. It stores the same encoded
//! records as [`super::SledStore`], so that the encodings are exercised too.

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::StorageError;
use super::engine::{Engine, Entry, FirstLast, TreeId};
use super::kv_store::{KvStore, impl_store_traits};

type Trees = [BTreeMap<Vec<u8>, Vec<u8>>; 7];

/// Trees in ordered maps; `flush` has nothing to do.
#[derive(Default)]
pub(super) struct MemEngine {
    trees: Mutex<Trees>,
}

impl MemEngine {
    fn lock(&self) -> MutexGuard<'_, Trees> {
        // A panic in another thread cannot leave a map half-updated: every write
        // below is a single map operation.
        self.trees.lock()
    }
}

fn range(start: &[u8], end: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (
        Bound::Included(start.to_vec()),
        Bound::Excluded(end.to_vec()),
    )
}

impl Engine for MemEngine {
    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock()[tree.index()].get(key).cloned())
    }

    fn insert(&self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.lock()[tree.index()].insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove_all(&self, tree: TreeId, keys: &[Vec<u8>]) -> Result<(), StorageError> {
        let mut trees = self.lock();
        for k in keys {
            trees[tree.index()].remove(k);
        }
        Ok(())
    }

    fn apply(&self, tree: TreeId, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), StorageError> {
        let mut trees = self.lock();
        let t = &mut trees[tree.index()];
        for (k, v) in ops {
            match v {
                Some(v) => {
                    t.insert(k.clone(), v.clone());
                }
                None => {
                    t.remove(k);
                }
            }
        }
        Ok(())
    }

    fn scan_limit(
        &self,
        tree: TreeId,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self.lock()[tree.index()]
            .range(range(start, end))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan(&self, tree: TreeId, start: &[u8], end: &[u8]) -> Result<Vec<Entry>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self.lock()[tree.index()]
            .range(range(start, end))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn keys(&self, tree: TreeId, start: &[u8], end: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self.lock()[tree.index()]
            .range(range(start, end))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn bounds(&self, tree: TreeId) -> Result<Option<FirstLast>, StorageError> {
        let trees = self.lock();
        let t = &trees[tree.index()];
        Ok(t.first_key_value()
            .zip(t.last_key_value())
            .map(|((first, _), (last, _))| (first.clone(), last.clone())))
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// An in-memory store implementing [`super::BlockStore`], [`super::WalStore`] and
/// [`super::MetaStore`] with the same rules as [`super::SledStore`]; nothing
/// survives the process. Clones share the same data.
#[derive(Clone)]
pub struct MemStore {
    inner: Arc<KvStore<MemEngine>>,
    /// The same trees: in memory there is no reason to split them.
    aux: Arc<KvStore<MemEngine>>,
    /// The same trees again (snapshots).
    snaps: Arc<KvStore<MemEngine>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        let inner = Arc::new(KvStore::new_empty(MemEngine::default()));
        MemStore {
            aux: inner.clone(),
            snaps: inner.clone(),
            inner,
        }
    }

    /// The trees, for tests that damage stored bytes.
    #[cfg(test)]
    pub(super) fn engine(&self) -> &dyn Engine {
        &self.inner.engine
    }
}

impl Default for MemStore {
    fn default() -> MemStore {
        MemStore::new()
    }
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore")
            .field("base", &self.inner.base_height())
            .field("latest", &self.inner.latest_height())
            .finish()
    }
}

impl_store_traits!(MemStore);
super::tx_index::impl_tx_index!(MemStore);
super::snapshots::impl_snapshots!(MemStore);
super::evidence::impl_evidence_index!(MemStore);

impl MemStore {
    /// The application state tree of this store.
    pub fn state_backend(&self) -> Arc<dyn super::state::StateBackend> {
        Arc::new(super::state::StateTree {
            inner: self.aux.clone(),
        })
    }
}
