//! Stored snapshots: manifests and chunks by height.
//!
//! Layout (tree `snapshots`): height (8 bytes) and 0 -> manifest; height, 1 and
//! chunk index (4 bytes) -> chunk. A snapshot exists once its manifest is
//! written, which happens last and durably.

use super::StorageError;
use super::engine::{Engine, TreeId};
use super::kv_store::KvStore;
use crate::types::Height;

/// Snapshots of the application state, served to joining nodes.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Stores chunk `index` of the snapshot of `height` (not yet durable).
    fn put_snapshot_chunk(
        &self,
        height: Height,
        index: u32,
        chunk: &[u8],
    ) -> Result<(), StorageError>;

    /// Makes the chunks stored so far durable. A snapshot writer calls it every
    /// few megabytes: the store may hold written chunks in memory until they
    /// are durable, and a snapshot of a large state is hundreds of megabytes.
    fn flush_snapshot_chunks(&self) -> Result<(), StorageError>;

    /// Stores the manifest, completing the snapshot; durable on return.
    fn put_snapshot_manifest(&self, height: Height, manifest: &[u8]) -> Result<(), StorageError>;

    /// The manifest of the snapshot of `height`.
    fn snapshot_manifest(&self, height: Height) -> Result<Option<Vec<u8>>, StorageError>;

    /// Chunk `index` of the snapshot of `height`.
    fn snapshot_chunk(&self, height: Height, index: u32) -> Result<Option<Vec<u8>>, StorageError>;

    /// Heights of the complete snapshots, ascending.
    fn snapshot_heights(&self) -> Result<Vec<Height>, StorageError>;

    /// Deletes the snapshot of `height`.
    fn delete_snapshot(&self, height: Height) -> Result<(), StorageError>;
}

fn manifest_key(h: Height) -> Vec<u8> {
    let mut k = h.0.to_be_bytes().to_vec();
    k.push(0);
    k
}

fn chunk_key(h: Height, i: u32) -> Vec<u8> {
    let mut k = h.0.to_be_bytes().to_vec();
    k.push(1);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

impl<E: Engine> KvStore<E> {
    pub(super) fn put_snapshot_chunk(
        &self,
        h: Height,
        i: u32,
        chunk: &[u8],
    ) -> Result<(), StorageError> {
        self.engine
            .insert(TreeId::Snapshots, &chunk_key(h, i), chunk)
    }

    pub(super) fn flush_snapshot_chunks(&self) -> Result<(), StorageError> {
        self.engine.flush()
    }

    pub(super) fn put_snapshot_manifest(
        &self,
        h: Height,
        manifest: &[u8],
    ) -> Result<(), StorageError> {
        self.engine
            .insert(TreeId::Snapshots, &manifest_key(h), manifest)?;
        self.engine.flush()
    }

    pub(super) fn snapshot_manifest(&self, h: Height) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine.get(TreeId::Snapshots, &manifest_key(h))
    }

    pub(super) fn snapshot_chunk(
        &self,
        h: Height,
        i: u32,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine.get(TreeId::Snapshots, &chunk_key(h, i))
    }

    pub(super) fn snapshot_heights(&self) -> Result<Vec<Height>, StorageError> {
        // One lookup per stored height, hopping from each height to the next:
        // listing every key would load every leaf of the tree, and the leaves
        // hold the chunks (hundreds of megabytes to read and decompress once
        // the store has let them go from memory, at each listing).
        let mut heights = Vec::new();
        let mut from = manifest_key(Height(0));
        loop {
            let next = self
                .engine
                .scan_limit(TreeId::Snapshots, &from, &[0xff; 14], 1)?;
            let Some((key, _)) = next.into_iter().next() else {
                break;
            };
            let Some(hb) = key.get(..8) else { break };
            let mut b = [0u8; 8];
            b.copy_from_slice(hb);
            let h = u64::from_be_bytes(b);
            // A height without its manifest is a snapshot never completed.
            if key.len() == 9 && key[8] == 0 {
                heights.push(Height(h));
            }
            match h.checked_add(1) {
                Some(n) => from = manifest_key(Height(n)),
                None => break,
            }
        }
        Ok(heights)
    }

    pub(super) fn delete_snapshot(&self, h: Height) -> Result<(), StorageError> {
        let keys = self.engine.keys(
            TreeId::Snapshots,
            &manifest_key(h),
            &manifest_key(Height(h.0 + 1)),
        )?;
        self.engine.remove_all(TreeId::Snapshots, &keys)?;
        self.engine.flush()
    }
}

macro_rules! impl_snapshots {
    ($store:ty) => {
        impl $crate::storage::SnapshotStore for $store {
            fn put_snapshot_chunk(
                &self,
                height: $crate::types::Height,
                index: u32,
                chunk: &[u8],
            ) -> Result<(), $crate::storage::StorageError> {
                self.snaps.put_snapshot_chunk(height, index, chunk)
            }

            fn flush_snapshot_chunks(&self) -> Result<(), $crate::storage::StorageError> {
                self.snaps.flush_snapshot_chunks()
            }

            fn put_snapshot_manifest(
                &self,
                height: $crate::types::Height,
                manifest: &[u8],
            ) -> Result<(), $crate::storage::StorageError> {
                self.snaps.put_snapshot_manifest(height, manifest)
            }

            fn snapshot_manifest(
                &self,
                height: $crate::types::Height,
            ) -> Result<Option<Vec<u8>>, $crate::storage::StorageError> {
                self.snaps.snapshot_manifest(height)
            }

            fn snapshot_chunk(
                &self,
                height: $crate::types::Height,
                index: u32,
            ) -> Result<Option<Vec<u8>>, $crate::storage::StorageError> {
                self.snaps.snapshot_chunk(height, index)
            }

            fn snapshot_heights(
                &self,
            ) -> Result<Vec<$crate::types::Height>, $crate::storage::StorageError> {
                self.snaps.snapshot_heights()
            }

            fn delete_snapshot(
                &self,
                height: $crate::types::Height,
            ) -> Result<(), $crate::storage::StorageError> {
                self.snaps.delete_snapshot(height)
            }
        }
    };
}

pub(super) use impl_snapshots;
