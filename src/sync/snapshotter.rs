//! Taking snapshots: every `interval` blocks the committed state is frozen (copy
//! on write, so consensus goes on) and cut into chunks in a background thread,
//! stored with their manifest; the last `keep` snapshots are kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use prost::Message;
use tracing::{info, warn};

use super::snapshot::{FORMAT, Manifest, SnapshotError, cut_chunks};
use crate::app::Application;
use crate::storage::SnapshotStore;
use crate::types::Height;

/// Entries read per page while taking a snapshot.
const PAGE: usize = 4096;

/// Chunk bytes stored between two flushes of the snapshot store. sled holds
/// what it wrote in memory until a flush (and a reopen) lets it go: written
/// whole, a snapshot of a million entries held 300 MB until its manifest.
const FLUSH_EVERY_BYTES: usize = 16 << 20;

/// Settings of the snapshotter.
#[derive(Clone, Debug)]
pub struct SnapshotPolicy {
    /// Every this many blocks (0 = never).
    pub interval: u64,
    /// Snapshots kept.
    pub keep: usize,
    /// Target chunk size.
    pub chunk_bytes: usize,
}

/// Takes snapshots in the background.
pub struct Snapshotter {
    app: Arc<dyn Application>,
    store: Arc<dyn SnapshotStore>,
    policy: SnapshotPolicy,
    running: AtomicBool,
}

impl Snapshotter {
    /// A snapshotter of `app`'s state into `store`.
    pub fn new(
        app: Arc<dyn Application>,
        store: Arc<dyn SnapshotStore>,
        policy: SnapshotPolicy,
    ) -> Snapshotter {
        Snapshotter {
            app,
            store,
            policy,
            running: AtomicBool::new(false),
        }
    }

    /// Called after each committed block: starts a snapshot when `height` is a
    /// multiple of the interval and none is running.
    pub fn on_commit(self: &Arc<Self>, height: Height) {
        if self.policy.interval == 0 || height.0 % self.policy.interval != 0 {
            return;
        }
        if self.running.swap(true, Ordering::AcqRel) {
            warn!(%height, "skipping a snapshot: the previous one is still being written");
            return;
        }
        let Some((h, root, buckets)) = self.app.begin_snapshot() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            match this.take(h, root, buckets) {
                Ok(m) => info!(
                    height = %h,
                    chunks = m.chunks.len(),
                    entries = m.entries(),
                    secs = started.elapsed().as_secs_f64(),
                    "snapshot taken"
                ),
                Err(e) => warn!(height = %h, error = %e, "snapshot failed"),
            }
            this.app.end_snapshot(h);
            this.running.store(false, Ordering::Release);
        });
    }

    /// Whether a snapshot is being written.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Writes the snapshot of `h` now (blocking).
    pub fn take(
        &self,
        h: Height,
        root: crate::types::Hash,
        buckets: Vec<crate::app::state::smt::TopNode>,
    ) -> Result<Manifest, SnapshotError> {
        let io = |e: crate::storage::StorageError| SnapshotError::Malformed(e.to_string());
        let mut unflushed = 0;
        let ranges = cut_chunks(
            self.policy.chunk_bytes,
            |from| {
                self.app
                    .snapshot_page(h, from, PAGE)
                    .map_err(|e| SnapshotError::Malformed(e.to_string()))
            },
            |i, bytes| {
                self.store.put_snapshot_chunk(h, i, bytes).map_err(io)?;
                unflushed += bytes.len();
                if unflushed >= FLUSH_EVERY_BYTES {
                    unflushed = 0;
                    self.store.flush_snapshot_chunks().map_err(io)?;
                }
                Ok(())
            },
        )?;
        let manifest = Manifest {
            height: h,
            format: FORMAT,
            state_root: root,
            buckets,
            chunks: ranges,
        };
        // The manifest, written last and durably, completes the snapshot.
        self.store
            .put_snapshot_manifest(h, &manifest.to_proto().encode_to_vec())
            .map_err(io)?;
        let heights = self.store.snapshot_heights().map_err(io)?;
        if heights.len() > self.policy.keep {
            for old in &heights[..heights.len() - self.policy.keep] {
                self.store.delete_snapshot(*old).map_err(io)?;
            }
        }
        Ok(manifest)
    }
}
