//! The store logic on top of an [`Engine`]: the block log with its heights, the
//! WAL and the metadata. [`super::SledStore`] and [`super::MemStore`] are this
//! logic over sled and over memory.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::{Block, BlockId, Commit, Height};

use super::encoding::{
    BlockRecord, decode_wal_entry, encode_block_record, encode_wal_entry, height_key, key_height,
    wal_key, wal_key_seq,
};
use super::engine::{Engine, TreeId};
use super::{StorageError, StoredBlock, WalEntry};

/// Keys removed per batch when pruning, so that one batch stays small (smaller in
/// tests, so that they cross batch boundaries with few blocks).
const PRUNE_BATCH: u64 = if cfg!(test) { 64 } else { 1024 };

/// Blocks, WAL and metadata over an engine.
pub(super) struct KvStore<E> {
    /// The trees.
    pub(super) engine: E,
    /// Highest stored height (0 when empty). Only changed under `write_lock`.
    latest: AtomicU64,
    /// Lowest stored height (0 when empty). Only changed under `write_lock`.
    base: AtomicU64,
    /// Serializes appends and prunes: the check against the tip and the write
    /// must not interleave with another append.
    write_lock: Mutex<()>,
    /// Next WAL sequence number. It grows across heights, so entries of one
    /// height stay in append order without a lock.
    wal_seq: AtomicU64,
    /// Every WAL record below this height has been removed by this process.
    /// Clearing starts here rather than at the first key: sled 1.0 keeps the
    /// empty leaves that removals leave behind, and a scan from the start walks
    /// all of them, one more per height.
    wal_floor: AtomicU64,
}

impl<E: Engine> KvStore<E> {
    /// A store over an engine known to be empty.
    pub(super) fn new_empty(engine: E) -> KvStore<E> {
        KvStore {
            engine,
            latest: AtomicU64::new(0),
            base: AtomicU64::new(0),
            write_lock: Mutex::new(()),
            wal_seq: AtomicU64::new(0),
            wal_floor: AtomicU64::new(0),
        }
    }

    /// Reads the tips of the block log and of the WAL from `engine`.
    pub(super) fn open(engine: E) -> Result<KvStore<E>, StorageError> {
        let (base, latest) = match engine.bounds(TreeId::Blocks)? {
            Some((first, last)) => (key_height(&first)?, key_height(&last)?),
            None => (Height(0), Height(0)),
        };
        let next_seq = engine
            // Every WAL key is 16 bytes, so this bound is above all of them.
            .keys(TreeId::Wal, &[], &[0xff; 17])?
            .iter()
            .filter_map(|k| wal_key_seq(k))
            .max()
            .map_or(0, |s| s.saturating_add(1));
        Ok(KvStore {
            engine,
            latest: AtomicU64::new(latest.0),
            base: AtomicU64::new(base.0),
            write_lock: Mutex::new(()),
            wal_seq: AtomicU64::new(next_seq),
            wal_floor: AtomicU64::new(0),
        })
    }

    // ---- blocks ----

    pub(super) fn append(
        &self,
        block: &Block,
        commit: &Commit,
        app_delta: &[u8],
        durable: bool,
    ) -> Result<(), StorageError> {
        let height = block.height();
        if height.0 == 0 {
            return Err(StorageError::Mismatch {
                height,
                reason: "no block is stored at height 0".into(),
            });
        }
        let block_id = block.id();
        if commit.height != height || commit.block_id != block_id {
            return Err(StorageError::Mismatch {
                height,
                reason: format!(
                    "commit is for block {} at height {}, the block is {}",
                    commit.block_id, commit.height, block_id
                ),
            });
        }
        let record = encode_block_record(&block_id, block, commit, app_delta);

        let _guard = self.write_lock.lock();
        let latest = self.latest.load(Ordering::Acquire);
        if latest != 0 && height.0 != latest.saturating_add(1) {
            return Err(StorageError::NotNext {
                expected: Height(latest.saturating_add(1)),
                got: height,
            });
        }
        // The durable commit of a block is this one write and the flush after it.
        self.engine
            .insert(TreeId::Blocks, &height_key(height), &record)?;
        if durable {
            self.engine.flush()?;
        }
        if latest == 0 {
            self.base.store(height.0, Ordering::Release);
        }
        self.latest.store(height.0, Ordering::Release);
        Ok(())
    }

    /// Makes every earlier write durable (fsync).
    pub(super) fn flush(&self) -> Result<(), StorageError> {
        self.engine.flush()
    }

    fn record(&self, height: Height) -> Result<Option<BlockRecord>, StorageError> {
        match self.engine.get(TreeId::Blocks, &height_key(height))? {
            Some(bytes) => BlockRecord::decode(height, bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn block(&self, height: Height) -> Result<Option<Block>, StorageError> {
        self.record(height)?
            .map(|r| r.decode_block(height))
            .transpose()
    }

    pub(super) fn commit(&self, height: Height) -> Result<Option<Commit>, StorageError> {
        self.record(height)?
            .map(|r| r.decode_commit(height))
            .transpose()
    }

    pub(super) fn stored(&self, height: Height) -> Result<Option<StoredBlock>, StorageError> {
        let Some(r) = self.record(height)? else {
            return Ok(None);
        };
        Ok(Some(StoredBlock {
            block: r.decode_block(height)?,
            commit: r.decode_commit(height)?,
            app_delta: r.app_delta.to_vec(),
        }))
    }

    pub(super) fn block_bytes(&self, height: Height) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.record(height)?.map(|r| r.block.to_vec()))
    }

    pub(super) fn block_id(&self, height: Height) -> Result<Option<BlockId>, StorageError> {
        Ok(self.record(height)?.map(|r| r.block_id))
    }

    pub(super) fn latest_height(&self) -> Height {
        Height(self.latest.load(Ordering::Acquire))
    }

    pub(super) fn base_height(&self) -> Height {
        Height(self.base.load(Ordering::Acquire))
    }

    pub(super) fn prune_below(&self, height: Height) -> Result<u64, StorageError> {
        let _guard = self.write_lock.lock();
        let latest = self.latest.load(Ordering::Acquire);
        let base = self.base.load(Ordering::Acquire);
        // Never the latest block: the next append must find its predecessor.
        let cutoff = height.0.min(latest);
        if latest == 0 || cutoff <= base {
            return Ok(0);
        }
        let mut from = base;
        while from < cutoff {
            let to = cutoff.min(from.saturating_add(PRUNE_BATCH));
            let keys: Vec<Vec<u8>> = (from..to).map(|h| height_key(Height(h)).to_vec()).collect();
            self.engine.remove_all(TreeId::Blocks, &keys)?;
            // Readers never see a base below a missing block.
            self.base.store(to, Ordering::Release);
            from = to;
        }
        // Not needed for safety (a pruned block that comes back is harmless), but
        // it keeps the base across a restart where the operator expects it.
        self.engine.flush()?;
        Ok(cutoff - base)
    }

    // ---- WAL ----

    pub(super) fn wal_append(&self, height: Height, entry: &WalEntry) -> Result<(), StorageError> {
        if entry.height() != height {
            return Err(StorageError::Mismatch {
                height,
                reason: format!("WAL entry of height {}", entry.height()),
            });
        }
        let seq = self.wal_seq.fetch_add(1, Ordering::AcqRel);
        self.engine
            .insert(TreeId::Wal, &wal_key(height, seq), &encode_wal_entry(entry))
    }

    pub(super) fn wal_entries(&self, height: Height) -> Result<Vec<WalEntry>, StorageError> {
        let records =
            self.engine
                .scan(TreeId::Wal, &wal_key(height, 0), &wal_key(height, u64::MAX))?;
        let mut entries = Vec::with_capacity(records.len());
        for (key, value) in records {
            match decode_wal_entry(height, &value) {
                Ok(entry) => entries.push(entry),
                Err(reason) => tracing::warn!(
                    height = height.0,
                    seq = wal_key_seq(&key),
                    %reason,
                    "dropping a damaged WAL record"
                ),
            }
        }
        Ok(entries)
    }

    pub(super) fn wal_clear_below(&self, height: Height) -> Result<(), StorageError> {
        let floor = self.wal_floor.load(Ordering::Acquire);
        if height.0 <= floor {
            return Ok(());
        }
        let keys =
            self.engine
                .keys(TreeId::Wal, &wal_key(Height(floor), 0), &wal_key(height, 0))?;
        for chunk in keys.chunks(PRUNE_BATCH as usize) {
            self.engine.remove_all(TreeId::Wal, chunk)?;
        }
        self.wal_floor.fetch_max(height.0, Ordering::AcqRel);
        Ok(())
    }

    // ---- metadata ----

    pub(super) fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine.get(TreeId::Meta, key.as_bytes())
    }

    pub(super) fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.engine.insert(TreeId::Meta, key.as_bytes(), value)?;
        self.engine.flush()
    }
}

/// Implements the three store traits for a newtype over `Arc<KvStore<_>>`.
macro_rules! impl_store_traits {
    ($store:ty) => {
        impl $crate::storage::BlockStore for $store {
            fn append(
                &self,
                block: &$crate::types::Block,
                commit: &$crate::types::Commit,
                app_delta: &[u8],
            ) -> Result<(), $crate::storage::StorageError> {
                self.inner.append(block, commit, app_delta, true)
            }

            fn append_deferred(
                &self,
                block: &$crate::types::Block,
                commit: &$crate::types::Commit,
                app_delta: &[u8],
            ) -> Result<(), $crate::storage::StorageError> {
                self.inner.append(block, commit, app_delta, false)
            }

            fn sync_blocks(&self) -> Result<(), $crate::storage::StorageError> {
                self.inner.flush()
            }

            fn block(
                &self,
                height: $crate::types::Height,
            ) -> Result<Option<$crate::types::Block>, $crate::storage::StorageError> {
                self.inner.block(height)
            }

            fn commit(
                &self,
                height: $crate::types::Height,
            ) -> Result<Option<$crate::types::Commit>, $crate::storage::StorageError> {
                self.inner.commit(height)
            }

            fn stored(
                &self,
                height: $crate::types::Height,
            ) -> Result<Option<$crate::storage::StoredBlock>, $crate::storage::StorageError> {
                self.inner.stored(height)
            }

            fn block_bytes(
                &self,
                height: $crate::types::Height,
            ) -> Result<Option<Vec<u8>>, $crate::storage::StorageError> {
                self.inner.block_bytes(height)
            }

            fn block_id(
                &self,
                height: $crate::types::Height,
            ) -> Result<Option<$crate::types::BlockId>, $crate::storage::StorageError> {
                self.inner.block_id(height)
            }

            fn latest_height(&self) -> $crate::types::Height {
                self.inner.latest_height()
            }

            fn base_height(&self) -> $crate::types::Height {
                self.inner.base_height()
            }

            fn prune_below(
                &self,
                height: $crate::types::Height,
            ) -> Result<u64, $crate::storage::StorageError> {
                self.inner.prune_below(height)
            }
        }

        impl $crate::storage::WalStore for $store {
            fn wal_append(
                &self,
                height: $crate::types::Height,
                entry: &$crate::storage::WalEntry,
            ) -> Result<(), $crate::storage::StorageError> {
                self.inner.wal_append(height, entry)
            }

            fn wal_entries(
                &self,
                height: $crate::types::Height,
            ) -> Result<Vec<$crate::storage::WalEntry>, $crate::storage::StorageError> {
                self.inner.wal_entries(height)
            }

            fn wal_clear_below(
                &self,
                height: $crate::types::Height,
            ) -> Result<(), $crate::storage::StorageError> {
                self.inner.wal_clear_below(height)
            }
        }

        impl $crate::storage::MetaStore for $store {
            fn meta_get(
                &self,
                key: &str,
            ) -> Result<Option<Vec<u8>>, $crate::storage::StorageError> {
                self.inner.meta_get(key)
            }

            fn meta_put(
                &self,
                key: &str,
                value: &[u8],
            ) -> Result<(), $crate::storage::StorageError> {
                self.inner.meta_put(key, value)
            }
        }
    };
}

pub(super) use impl_store_traits;
