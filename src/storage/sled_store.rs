//! The on-disk store: one sled database with a tree per kind of record.
//!
//! sled 1.0 keeps each leaf of a tree as one object, and a flush rewrites every
//! leaf dirtied since the last one. The tip leaf of the blocks tree is dirtied by
//! every append, so the cost of an append's flush grows with the number of blocks
//! that leaf holds. A small fanout bounds that to a few blocks (see
//! `LEAF_FANOUT`); the trees here hold few, large values, where a wide leaf buys
//! nothing. (A future tree of many small values, such as the application state,
//! wants a wide fanout and so a database of its own.)
//!
//! A flush is sled's durability point: it writes the dirty leaves to the heap
//! files, fsyncs them, appends to the metadata log and fsyncs it and the
//! directory, so an append costs about three fsyncs.
//!
//! What sled 1.0.0-alpha.124 demands of its user, and how this module meets it:
//! - `Db` and `Tree` are `Send` but not `Sync`: a pool of handle clones, one per
//!   concurrent caller.
//! - Opening damaged heap files panics inside sled and then blocks forever: the
//!   open runs on its own thread with a timeout ([`SledOptions::open_timeout`]).
//! - Backward iteration can deadlock against a concurrent batch: it is used only
//!   at open, to find the first and last heights.
//! - A failed background flush aborts the process: flushes are explicit by
//!   default, so that a failure is an error the node can stop on.
//! - In sled's explicit-flush mode (`flush_every_ms(None)`) dropping any `Tree`
//!   value flushes the whole database, fsync included, and every range
//!   iterator holds a `Tree` clone: each scan cost a flush. The databases are
//!   therefore opened in background mode with an interval that never elapses
//!   ([`NEVER_MS`]): drops cost nothing, sled's thread flushes only when the
//!   database closes, and every durable write still flushes explicitly.
//! - A leaf sled wrote is never paged out again, whatever the cache size: the
//!   engine closes and reopens the database right after a flush once enough
//!   was written (see `REOPEN_CHARGE_PER_WRITE`). The close waits for sled's
//!   thread to flush what is left and release the directory lock.

use parking_lot::{Mutex, RwLock};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::StorageError;
use super::engine::{Engine, Entry, FirstLast, TreeId};
use super::kv_store::{KvStore, impl_store_traits};

/// Entries per sled leaf (3 is sled's minimum). sled re-serializes, compresses and
/// rewrites a whole dirty leaf on every flush, and the tip leaf of the block log is
/// dirtied by every append, so it must hold few blocks. Measured on the project's
/// 2-core machine, appending blocks of ~1 MiB: fanout 4 gave a median of 32-40 ms
/// and a p90 of 56 ms per append, fanout 16 a median of 46-49 ms, a p90 of
/// 124-136 ms and 1.7 times the disk space; with ~1.6 KiB blocks sled's default of
/// 1024 took 16 ms against 9 ms for 16 (and 7.6 times the disk space), while 4 and
/// 16 were alike. The price of a small fanout is more leaves: sled keeps one index
/// entry in memory per leaf, about one per two blocks here. The value is fixed
/// when the database is created, so changing it needs a migration.
const LEAF_FANOUT: usize = 4;

/// sled compresses every leaf it writes with zstd (it cannot be turned off).
/// Level 1 rather than sled's 3: blocks of signed transactions hardly
/// compress, and the compressor's tables, allocated and cleared at every leaf
/// write, are several times smaller.
const ZSTD_LEVEL: i32 = 1;

/// The background-flush interval that stands for "never": sled's flusher waits
/// with `recv_timeout`, which waits without a deadline when the interval
/// overflows the clock.
const NEVER_MS: usize = usize::MAX;

/// Entries per leaf of the second database, which holds the application state
/// and the transaction and evidence indexes: many small entries written at
/// random places, where a wide leaf keeps sled's per-leaf index small.
/// (Snapshot chunks, megabytes each, live in a third database with the block
/// log's fanout.)
const STATE_FANOUT: usize = 64;

/// Settings of a [`SledStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SledOptions {
    /// Bytes of sled's page cache.
    pub cache_capacity_bytes: usize,
    /// Flush in a background thread every this many milliseconds, or only when
    /// the store asks (`None`, the default). Every write that must be durable is
    /// flushed before it returns either way; the background flush only bounds how
    /// long WAL appends stay in memory. Beware that sled aborts the process when
    /// a background flush fails, whereas a failed explicit flush is an error the
    /// node can stop on.
    pub background_flush_ms: Option<usize>,
    /// How long opening may take before it is given up as stuck. sled
    /// 1.0.0-alpha.124 panics while opening a database whose heap files are
    /// damaged, and the unwinding then blocks forever in sled's shutdown code; the
    /// open runs on a thread of its own so that the caller gets
    /// [`StorageError::OpenFailed`] instead of hanging. Recovery of a large
    /// database reads all of sled's metadata, so keep this generous.
    pub open_timeout: Duration,
}

impl Default for SledOptions {
    fn default() -> SledOptions {
        SledOptions {
            cache_capacity_bytes: 256 * 1024 * 1024,
            background_flush_ms: None,
            open_timeout: Duration::from_secs(300),
        }
    }
}

/// One set of sled handles. sled 1.0's `Db` and `Tree` are `Send` but not `Sync`:
/// each handle carries its own epoch-reclamation state and is meant to be used by
/// one thread at a time, with a clone per thread.
#[derive(Clone)]
struct Handles<const F: usize> {
    trees: [sled::Tree<F>; 7],
}

/// One sled database, shared by threads through a pool of handles.
pub(super) struct SledEngine<const F: usize> {
    path: PathBuf,
    options: SledOptions,
    /// Held shared by every operation and exclusively by a reopen, which so
    /// finds every handle back in the pool.
    gate: RwLock<()>,
    /// Cloned whenever the pool is empty. Holds the `Db`, whose drop (with the
    /// last handle) flushes and closes the database. `None` only if a reopen
    /// failed: every later operation then fails.
    template: Mutex<Option<(sled::Db<F>, Handles<F>)>>,
    /// Handles not in use. It grows to the number of threads that ever used the
    /// store at once and never shrinks, so that a clone is made rarely.
    /// Boxed: a set is seven sled trees, hundreds of bytes, and moving it in
    /// and out of the pool on every read showed in profiles as memcpy.
    idle: Mutex<Vec<Box<Handles<F>>>>,
    /// Estimated bytes of leaves written since the database was opened: what
    /// sled holds in memory until it is closed (see [`REOPEN_CHARGE_PER_WRITE`]).
    written: AtomicUsize,
    /// Reopens so far.
    reopens: AtomicU64,
}

/// What one written entry is charged on top of its bytes towards a reopen: a
/// share of the leaf it dirties (a state leaf holds 64 entries of a few hundred
/// bytes, and random writes dirty a whole leaf each).
///
/// sled 1.0.0-alpha.124 never pages out a leaf it wrote: after a flush a
/// leaf's `max_unflushed_epoch` stays set, so eviction defers it to a flush of
/// that epoch, which has passed. Whatever the cache size, every leaf written
/// since the database was opened stays in memory (measured: appending 1 GiB of
/// 300 KB values with a 32 MiB cache and a flush after each, the process grew
/// to 1.1 GB; closing and reopening every 150 MB held it at 141 MB, each
/// reopen taking 10-20 ms). So the engine closes and reopens its database,
/// right after a flush, once that much has been written; leaves read back
/// later are clean and obey the cache size.
const REOPEN_CHARGE_PER_WRITE: usize = 2048;

/// Least estimated bytes written between two reopens, whatever the cache size.
const MIN_REOPEN_BYTES: usize = 16 << 20;

impl<const F: usize> SledEngine<F> {
    fn open(dir: &Path, options: &SledOptions) -> Result<SledEngine<F>, StorageError> {
        let (db, handles) = open_with_handles::<F>(dir, options)?;
        Ok(SledEngine {
            path: dir.to_path_buf(),
            options: options.clone(),
            gate: RwLock::new(()),
            idle: Mutex::new(vec![Box::new(handles.clone())]),
            template: Mutex::new(Some((db, handles))),
            written: AtomicUsize::new(0),
            reopens: AtomicU64::new(0),
        })
    }

    fn closed(&self) -> StorageError {
        StorageError::OpenFailed {
            path: self.path.clone(),
            reason: "the database could not be reopened; see the earlier error".into(),
        }
    }

    /// Runs `f` on a handle that no other thread uses meanwhile.
    fn with<R>(&self, f: impl FnOnce(&Handles<F>) -> R) -> Result<R, StorageError> {
        let _shared = self.gate.read();
        let pooled = self.idle.lock().pop();
        let handles = match pooled {
            Some(h) => h,
            None => match &*self.template.lock() {
                Some((_, h)) => Box::new(h.clone()),
                None => return Err(self.closed()),
            },
        };
        let r = f(&handles);
        self.idle.lock().push(handles);
        Ok(r)
    }

    /// Runs `f` on `tree`, mapping sled's error to one that says what and where.
    fn on<R>(
        &self,
        tree: TreeId,
        op: &'static str,
        f: impl FnOnce(&sled::Tree<F>) -> std::io::Result<R>,
    ) -> Result<R, StorageError> {
        self.with(|h| f(&h.trees[tree.index()]))?
            .map_err(|source| StorageError::Sled {
                op,
                path: self.path.clone(),
                source,
            })
    }

    /// Counts `entries` writes of `bytes` in all towards the next reopen.
    fn charge(&self, entries: usize, bytes: usize) {
        self.written.fetch_add(
            bytes.saturating_add(entries.saturating_mul(REOPEN_CHARGE_PER_WRITE)),
            Ordering::Relaxed,
        );
    }

    /// Closes and reopens the database if enough was written since it was
    /// opened (see [`REOPEN_CHARGE_PER_WRITE`]). Called right after a flush, so
    /// the close has (almost) nothing left to write.
    fn reopen_if_due(&self) -> Result<(), StorageError> {
        let limit = self.options.cache_capacity_bytes.max(MIN_REOPEN_BYTES);
        if self.written.load(Ordering::Relaxed) < limit {
            return Ok(());
        }
        let _exclusive = self.gate.write();
        if self.written.load(Ordering::Relaxed) < limit {
            return Ok(()); // another thread reopened it meanwhile
        }
        let started = Instant::now();
        // Every handle is in the pool (the gate is held exclusively): dropping
        // them and the template closes the database, flushing what is left.
        self.idle.lock().clear();
        let mut template = self.template.lock();
        drop(template.take());
        let (db, handles) = open_with_handles::<F>(&self.path, &self.options)?;
        self.idle.lock().push(Box::new(handles.clone()));
        *template = Some((db, handles));
        let written = self.written.swap(0, Ordering::Relaxed);
        self.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            path = %self.path.display(),
            written_mb = written >> 20,
            took_ms = started.elapsed().as_millis() as u64,
            "reopened the database to release the leaves it wrote"
        );
        Ok(())
    }
}

/// Opens the database in `dir` and a handle to each of its trees.
fn open_with_handles<const F: usize>(
    dir: &Path,
    options: &SledOptions,
) -> Result<(sled::Db<F>, Handles<F>), StorageError> {
    let sled_err = |op| {
        let path = dir.to_path_buf();
        move |source| StorageError::Sled { op, path, source }
    };
    let db = open_db::<F>(dir, options)?;
    let open = |t: TreeId| db.open_tree(t.name()).map_err(sled_err("open tree"));
    let handles = Handles {
        trees: [
            open(TreeId::ALL[0])?,
            open(TreeId::ALL[1])?,
            open(TreeId::ALL[2])?,
            open(TreeId::ALL[3])?,
            open(TreeId::ALL[4])?,
            open(TreeId::ALL[5])?,
            open(TreeId::ALL[6])?,
        ],
    };
    Ok((db, handles))
}

/// Name of the thread that opens a database.
const OPEN_THREAD: &str = "sled-open";

/// Open threads that panicked. sled panics on damaged heap files and then
/// blocks while unwinding, so neither its result nor the end of its thread ever
/// comes: a panic hook is the only prompt sign, and it turns a wait of
/// `open_timeout` into an immediate error.
static OPEN_PANICS: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());

/// Installs (once) a panic hook that records panics of open threads, then
/// hands every panic to the hook that was there before.
fn watch_open_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let me = std::thread::current();
            if me.name() == Some(OPEN_THREAD) {
                OPEN_PANICS.lock().push(me.id());
            }
            previous(info);
        }));
    });
}

fn open_panicked(id: std::thread::ThreadId) -> bool {
    OPEN_PANICS.lock().contains(&id)
}

/// Opens the database on a thread of its own, waiting at most
/// `options.open_timeout` (see [`SledOptions::open_timeout`] for why), and no
/// longer once that thread panicked.
fn open_db<const F: usize>(dir: &Path, options: &SledOptions) -> Result<sled::Db<F>, StorageError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity_bytes(options.cache_capacity_bytes)
        .zstd_compression_level(ZSTD_LEVEL)
        .flush_every_ms(Some(options.background_flush_ms.unwrap_or(NEVER_MS)));
    watch_open_panics();
    let (tx, rx) = mpsc::channel();
    let opener = std::thread::Builder::new()
        .name(OPEN_THREAD.into())
        .spawn(move || {
            // The receiver is gone only if the caller gave up already.
            let _ = tx.send(config.open::<F>());
        })
        .map_err(|e| StorageError::io("spawn a thread to open", dir, e))?;
    let opener = opener.thread().id();
    let failed = |reason: String| StorageError::OpenFailed {
        path: dir.to_path_buf(),
        reason,
    };
    let panicked =
        || failed("sled panicked while opening it (see the log); its files are damaged".into());
    let deadline = Instant::now() + options.open_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(result) => {
                return result.map_err(|source| StorageError::Sled {
                    op: "open",
                    path: dir.to_path_buf(),
                    source,
                });
            }
            Err(RecvTimeoutError::Disconnected) => return Err(panicked()),
            Err(RecvTimeoutError::Timeout) if open_panicked(opener) => return Err(panicked()),
            Err(RecvTimeoutError::Timeout) if left.is_zero() => {
                return Err(failed(format!(
                    "sled did not finish opening it within {:?}: it hangs after a panic on \
                     damaged files (see the log for the panic), or recovery is slow; the \
                     process should exit",
                    options.open_timeout
                )));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

impl<const F: usize> Engine for SledEngine<F> {
    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.on(tree, "get", |t| Ok(t.get(key)?.map(|v| v.to_vec())))
    }

    fn insert(&self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.charge(1, key.len() + value.len());
        self.on(tree, "insert", |t| t.insert(key, value).map(drop))
    }

    fn remove_all(&self, tree: TreeId, keys: &[Vec<u8>]) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k.as_slice());
        }
        self.charge(keys.len(), keys.iter().map(Vec::len).sum());
        self.on(tree, "apply batch", |t| t.apply_batch(batch))
    }

    fn apply(&self, tree: TreeId, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                None => batch.remove(k.as_slice()),
            }
        }
        let bytes = ops
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.charge(ops.len(), bytes);
        self.on(tree, "apply batch", |t| t.apply_batch(batch))
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
        self.on(tree, "scan", |t| {
            t.range(start..end)
                .take(limit)
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect()
        })
    }

    fn scan(&self, tree: TreeId, start: &[u8], end: &[u8]) -> Result<Vec<Entry>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.on(tree, "scan", |t| {
            t.range(start..end)
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect()
        })
    }

    fn keys(&self, tree: TreeId, start: &[u8], end: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.on(tree, "scan", |t| {
            t.range(start..end)
                .map(|kv| kv.map(|(k, _)| k.to_vec()))
                .collect()
        })
    }

    fn bounds(&self, tree: TreeId) -> Result<Option<FirstLast>, StorageError> {
        // Only called at open: sled 1.0's backward iteration may deadlock against a
        // concurrent batch (a known 1.0 blocker), and nothing else runs then.
        self.on(tree, "first/last", |t| {
            let first = t.first()?;
            let last = t.last()?;
            Ok(first
                .zip(last)
                .map(|((first, _), (last, _))| (first.to_vec(), last.to_vec())))
        })
    }

    fn flush(&self) -> Result<(), StorageError> {
        // A flush covers the whole database, whichever tree it is called on.
        self.on(TreeId::Blocks, "flush", |t| t.flush().map(drop))?;
        self.reopen_if_due()
    }
}

/// The node's store on disk, in three sled databases under one directory:
///
/// - `log/`: blocks with their commits and state deltas, the consensus WAL and
///   metadata. Every block append is one write and one flush (fsync): the
///   durable commit of a block never waits on random writes.
/// - `state/`: the application state and the transaction and evidence indexes.
///   It is derived from the log, written without waiting for the disk and
///   flushed at checkpoints ([`SledStore::flush_state`]); after a crash
///   whatever it lost is rebuilt from the log.
/// - `snapshots/`: snapshot chunks and manifests, each manifest flushed after
///   its chunks. Apart from the state because a chunk is megabytes and sled
///   reads and writes whole leaves: in the state's 64-entry leaves one chunk
///   read paged in up to 64 chunks (hundreds of MB), here at most 4; and its
///   flushes no longer flush the state database (which must never be
///   durable ahead of the block log).
///
/// Clones share the databases; they are closed (and flushed) when the last clone
/// drops.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<KvStore<SledEngine<LEAF_FANOUT>>>,
    aux: Arc<KvStore<SledEngine<STATE_FANOUT>>>,
    snaps: Arc<KvStore<SledEngine<LEAF_FANOUT>>>,
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir` with default settings.
    pub fn open(dir: &Path) -> Result<SledStore, StorageError> {
        SledStore::open_with(dir, &SledOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`.
    pub fn open_with(dir: &Path, options: &SledOptions) -> Result<SledStore, StorageError> {
        let engine = SledEngine::<LEAF_FANOUT>::open(&dir.join("log"), options)?;
        let aux = SledEngine::<STATE_FANOUT>::open(&dir.join("state"), options)?;
        let snaps = SledEngine::<LEAF_FANOUT>::open(&dir.join("snapshots"), options)?;
        Ok(SledStore {
            inner: Arc::new(KvStore::open(engine)?),
            aux: Arc::new(KvStore::new_empty(aux)),
            snaps: Arc::new(KvStore::new_empty(snaps)),
        })
    }

    /// The directory of the block-log database.
    pub fn path(&self) -> &Path {
        &self.inner.engine.path
    }

    /// Makes the state, transaction index and snapshot writes so far durable.
    pub fn flush_state(&self) -> Result<(), StorageError> {
        self.aux.engine.flush()
    }

    /// Makes every write so far durable, the WAL appends included (fsync).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.engine.flush()
    }

    /// Times the databases were closed and reopened to release the leaves
    /// sled keeps of what it wrote (see `REOPEN_CHARGE_PER_WRITE`).
    pub fn reopens(&self) -> u64 {
        self.inner.engine.reopens.load(Ordering::Relaxed)
            + self.aux.engine.reopens.load(Ordering::Relaxed)
            + self.snaps.engine.reopens.load(Ordering::Relaxed)
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        let engine = &self.inner.engine;
        let template = engine.template.lock();
        let (db, _) = template.as_ref().ok_or_else(|| engine.closed())?;
        db.size_on_disk()
            .map_err(|e| StorageError::io("measure", self.path(), e))
    }

    /// The trees, for tests that damage stored bytes.
    #[cfg(test)]
    pub(super) fn engine(&self) -> &dyn Engine {
        &self.inner.engine
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path())
            .field("base", &self.inner.base_height())
            .field("latest", &self.inner.latest_height())
            .finish()
    }
}

impl_store_traits!(SledStore);
super::tx_index::impl_tx_index!(SledStore);
super::snapshots::impl_snapshots!(SledStore);
super::evidence::impl_evidence_index!(SledStore);

impl SledStore {
    /// The application state tree of this store.
    pub fn state_backend(&self) -> Arc<dyn super::state::StateBackend> {
        Arc::new(super::state::StateTree {
            inner: self.aux.clone(),
        })
    }
}
