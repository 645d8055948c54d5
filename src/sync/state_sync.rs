//! State sync: a node with no blocks restores the application state from its
//! peers' snapshots instead of replaying history.
//!
//! 1. Ask every server for its snapshots; pick the newest height offered.
//! 2. Fetch the header and commit at that height and verify the commit against
//!    the genesis validator set (more than 2/3 of the power, batch-verified).
//! 3. Fetch the manifest and check its bucket table against the signed root.
//! 4. Download chunks in parallel from every server offering the snapshot; check
//!    each on arrival against the manifest before writing it; a server that
//!    serves a bad chunk is dropped at that chunk, which is fetched elsewhere.
//! 5. Persist progress every few chunks, so a restarted node resumes.
//! 6. Recompute the root from everything written and compare (from the leaves
//!    of each chunk as checked and written, without reading the state back;
//!    chunks written before a restart are read back); store the block of that
//!    height as the first of the node's history.
//!
//! If no server offers a snapshot, the node says so and syncs blocks from
//! genesis; a server that does not answer is given up after a timeout, so
//! nothing here can hang.

use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::Semaphore;
use tonic::transport::Channel;
use tracing::{info, warn};

use super::progress::Progress;
use super::snapshot::{Manifest, verify_chunk};
use crate::app::state::committed::scan_buckets;
use crate::app::state::smt::{BUCKETS, Leaf};
use crate::app::state::{Change, CommittedState, PreparedChanges, StateBackend, StateError};
use crate::codec::{Wire, encode_outcome};
use crate::pb;
use crate::pb::node_service_client::NodeServiceClient;
use crate::pb::sync_service_client::SyncServiceClient;
use crate::storage::{BlockStore, MetaStore};
use crate::types::{Block, Commit, Hash, Header, Height, ValidatorSet};

/// Metadata key of a restore in progress (height, manifest, light block).
const TARGET_KEY: &str = "statesync/target";
/// Time allowed for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed requests before a server is given up.
const MAX_FAILURES: u32 = 3;
/// Restores started over (with a newer snapshot) before giving up.
const MAX_ATTEMPTS: u32 = 4;
/// Chunks written between two flushes. A flush makes the entries and
/// progress marks written so far durable and costs a few fsyncs; a restarted
/// restore fetches again at most what was not yet flushed. Three chunks of the
/// default 4 MiB: a flush per chunk took 10 % longer over a million entries,
/// and every 32 MiB held 50 MB more in memory.
const FLUSH_EVERY_CHUNKS: usize = 3;
/// Largest message accepted from a server (a chunk plus framing).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Why state sync failed.
#[derive(Debug, thiserror::Error)]
pub enum StateSyncError {
    /// Every server that offered the snapshot was dropped or failed.
    #[error("state sync of height {height} failed: {reason}")]
    Failed {
        /// The snapshot height.
        height: Height,
        /// Why.
        reason: String,
    },
    /// Local storage failed.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The local state store failed.
    #[error("storage: {0}")]
    State(#[from] StateError),
    /// A blocking task of the restore panicked or was cancelled.
    #[error("storage: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How state sync ended.
pub enum Outcome {
    /// The state of a snapshot height is restored and its block stored. The
    /// state comes opened (its root checked against the signed header, its
    /// height that of the snapshot): the node starts from it instead of
    /// reading every entry back a second time.
    Restored(Box<CommittedState>),
    /// No server offers a snapshot: sync blocks from genesis.
    NoSnapshot,
}

/// What state sync needs to know.
#[derive(Clone, Debug)]
pub struct StateSyncConfig {
    /// Chain id of the genesis.
    pub chain_id: String,
    /// The genesis validator set, which certifies every header.
    pub validators: ValidatorSet,
    /// gRPC addresses of the servers.
    pub servers: Vec<String>,
    /// Chunks fetched at once from one server.
    pub fetchers_per_server: usize,
    /// Most chunks held at once over all servers (fetched and not yet written).
    pub chunks_in_flight: usize,
    /// TLS to the servers (their CAs, our member certificate); `None` for
    /// plaintext servers.
    pub tls: Option<crate::pki::ClientTls>,
}

/// Where restored data goes: the block log (the block of the snapshot height)
/// and metadata (progress).
#[derive(Clone)]
pub struct SyncStore {
    /// The block log.
    pub blocks: Arc<dyn BlockStore>,
    /// Metadata.
    pub meta: Arc<dyn MetaStore>,
}

#[derive(Clone)]
struct Server {
    addr: String,
    sync: SyncServiceClient<Channel>,
    node: NodeServiceClient<Channel>,
}

async fn connect(addr: &str, tls: Option<&crate::pki::ClientTls>) -> Option<Server> {
    let endpoint = match tls {
        Some(t) => match t.endpoint(addr) {
            Ok(e) => e,
            Err(e) => {
                warn!(server = addr, error = %e, "bad sync server address");
                return None;
            }
        },
        None => {
            let url = if addr.starts_with("http") {
                addr.to_string()
            } else {
                format!("http://{addr}")
            };
            tonic::transport::Endpoint::from_shared(url).ok()?
        }
    };
    let channel = match tokio::time::timeout(
        REQUEST_TIMEOUT,
        endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect(),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            warn!(server = addr, error = %e, "cannot connect to sync server");
            return None;
        }
        Err(_) => {
            warn!(server = addr, "timed out connecting to sync server");
            return None;
        }
    };
    Some(Server {
        addr: addr.to_string(),
        sync: SyncServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
        node: NodeServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
    })
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(format!("{}: {}", s.code(), s.message())),
        Err(_) => Err("timed out".into()),
    }
}

/// The snapshot being restored, as persisted.
struct Target {
    manifest: Manifest,
    header: Header,
    commit: Commit,
}

fn encode_target(t: &Target) -> Vec<u8> {
    // Reuses the wire messages: a manifest and a light block, length-prefixed.
    let m = t.manifest.to_proto().encode_to_vec();
    let lb = pb::LightBlock {
        header: Some(t.header.to_proto()),
        commit: Some(t.commit.to_proto()),
    }
    .encode_to_vec();
    let mut out = Vec::with_capacity(8 + m.len() + lb.len());
    out.extend_from_slice(&(m.len() as u64).to_be_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(&lb);
    out
}

fn decode_target(b: &[u8]) -> Option<Target> {
    let len = u64::from_be_bytes(b.get(..8)?.try_into().ok()?) as usize;
    let m = b.get(8..8usize.checked_add(len)?)?;
    let lb = b.get(8 + len..)?;
    let manifest = Manifest::from_proto(pb::SnapshotManifest::decode(m).ok()?).ok()?;
    let lb = pb::LightBlock::decode(lb).ok()?;
    Some(Target {
        manifest,
        header: Header::from_proto(lb.header?).ok()?,
        commit: Commit::from_proto(lb.commit?).ok()?,
    })
}

/// Every server's list of snapshots, asked of all at once, in server order.
async fn list_all(servers: &[Server]) -> Vec<Result<pb::ListSnapshotsResponse, String>> {
    futures::future::join_all(servers.iter().map(|s| {
        let mut client = s.sync.clone();
        async move { timed(client.list_snapshots(pb::ListSnapshotsRequest {})).await }
    }))
    .await
}

/// Checks a light block: the commit certifies the header for the genesis set.
pub fn verify_light_block(
    cfg: &StateSyncConfig,
    lb: pb::LightBlock,
    height: Height,
) -> Result<(Header, Commit), String> {
    let header = Header::from_proto(lb.header.ok_or("no header")?).map_err(|e| e.to_string())?;
    let commit = Commit::from_proto(lb.commit.ok_or("no commit")?).map_err(|e| e.to_string())?;
    if header.chain_id != cfg.chain_id {
        return Err(format!("header of chain {:?}", header.chain_id));
    }
    if header.height != height {
        return Err(format!(
            "header of height {}, asked {height}",
            header.height
        ));
    }
    commit
        .verify(&cfg.chain_id, &cfg.validators, height, &header.id())
        .map_err(|e| format!("commit: {e}"))?;
    Ok((header, commit))
}

/// Whether a restore was begun and not finished: the node must resume it
/// before anything else, even if the block of its snapshot height is stored
/// already (a crash between the last steps of [`run`]).
pub fn in_progress(meta: &dyn MetaStore) -> Result<bool, crate::storage::StorageError> {
    Ok(meta
        .meta_get(TARGET_KEY)?
        .is_some_and(|b| decode_target(&b).is_some()))
}

/// Runs state sync into `backend` and `store` (which must hold no blocks, or
/// only the block of the snapshot height of a restore [`in_progress`]).
pub async fn run(
    cfg: &StateSyncConfig,
    store: SyncStore,
    backend: Arc<dyn StateBackend>,
    progress: Arc<Progress>,
) -> Result<Outcome, StateSyncError> {
    // Every server at once: each may take up to the request timeout.
    let servers: Vec<Server> =
        futures::future::join_all(cfg.servers.iter().map(|a| connect(a, cfg.tls.as_ref())))
            .await
            .into_iter()
            .flatten()
            .collect();
    // A restore interrupted earlier resumes with the same snapshot. If the
    // servers drop the snapshot being restored (they keep only their newest
    // ones), start over with a newer one.
    let mut attempt = 0;
    let (target, known) = loop {
        attempt += 1;
        let Some(target) = pick_target(cfg, &servers, &store, &backend, &progress).await? else {
            return Ok(Outcome::NoSnapshot);
        };
        match restore_chunks(cfg, &servers, &target, backend.clone(), &progress).await {
            Ok(known) => break (target, known),
            Err(e) if attempt < MAX_ATTEMPTS => {
                warn!(error = %e, attempt, "starting state sync over with the newest snapshot");
                store.meta.meta_put(TARGET_KEY, &[])?;
            }
            Err(e) => return Err(e),
        }
    };
    let height = target.manifest.height;

    // Every entry written: the root recomputed from them must be the signed
    // one. The leaves of the chunks this run wrote are those computed from the
    // very entries handed to the backend; chunks written before a restart are
    // read back.
    let b = backend.clone();
    let state = tokio::task::spawn_blocking(move || {
        let leaves = complete_leaves(b.as_ref(), known)?;
        CommittedState::from_leaves(b, leaves)
    })
    .await??;
    let root = state.committed().1;
    if root != target.header.app_hash {
        // Chunks were checked one by one, so this means local corruption: start over.
        let _ = store.meta.meta_put(TARGET_KEY, &[]);
        return Err(StateSyncError::Failed {
            height,
            reason: format!(
                "restored state has root {root}, the signed header says {}",
                target.header.app_hash
            ),
        });
    }
    // The block of the snapshot height first, durably, then the state's
    // height, then the end of the restore. Each step is skipped if a run that
    // crashed after it did it already: until the target is cleared, a restart
    // resumes the restore (see [`in_progress`]), whatever the block log holds.
    if store.blocks.latest_height() < height {
        let block = fetch_block(&servers, &target)
            .await
            .ok_or_else(|| StateSyncError::Failed {
                height,
                reason: "no server served the block of the snapshot height".into(),
            })?;
        store
            .blocks
            .append(&block, &target.commit, &encode_outcome(&[], &[]))?;
    }
    #[cfg(feature = "faults")]
    crate::faults::crash_point("state-sync-block-appended");
    if state.committed().0 < height {
        // No change of entries: only the applied height, in the state and on disk.
        let none = PreparedChanges {
            changes: Vec::new(),
            buckets: Default::default(),
            root,
        };
        state.apply(height, &none).and_then(|_| backend.flush())?;
    }
    #[cfg(feature = "faults")]
    crate::faults::crash_point("state-sync-state-flushed");
    store.meta.meta_put(TARGET_KEY, &[])?;
    progress.finish_state_sync();
    info!(%height, root = %root, "state restored from snapshot");
    Ok(Outcome::Restored(Box::new(state)))
}

/// The snapshot to restore: the one an interrupted restore was working on, or
/// the newest offered (the state tree is cleared and progress reset for it).
async fn pick_target(
    cfg: &StateSyncConfig,
    servers: &[Server],
    store: &SyncStore,
    backend: &Arc<dyn StateBackend>,
    progress: &Progress,
) -> Result<Option<Target>, StateSyncError> {
    let resumed = store
        .meta
        .meta_get(TARGET_KEY)?
        .and_then(|b| decode_target(&b));
    if let Some(t) = resumed {
        info!(height = %t.manifest.height, "resuming an interrupted state sync");
        progress.set_phase_state_sync(t.manifest.height);
        return Ok(Some(t));
    }
    let Some(t) = choose(cfg, servers, progress).await? else {
        return Ok(None);
    };
    backend
        .clear()
        .and_then(|_| backend.set_restore_progress(&vec![0u8; t.manifest.chunks.len()]))
        .and_then(|_| backend.flush())?;
    store.meta.meta_put(TARGET_KEY, &encode_target(&t))?;
    Ok(Some(t))
}

/// Picks the newest snapshot offered, verifies its header and manifest.
async fn choose(
    cfg: &StateSyncConfig,
    servers: &[Server],
    progress: &Progress,
) -> Result<Option<Target>, StateSyncError> {
    // (height, manifest hash) -> servers offering it.
    let mut offers: BTreeMap<(Height, Hash), Vec<usize>> = BTreeMap::new();
    for (i, (s, listed)) in servers.iter().zip(list_all(servers).await).enumerate() {
        match listed {
            Ok(list) => {
                for snap in list.snapshots.iter().take(16) {
                    if let Ok(h) = Hash::from_slice(&snap.manifest_hash) {
                        offers.entry((Height(snap.height), h)).or_default().push(i);
                    }
                }
            }
            Err(e) => warn!(server = %s.addr, error = %e, "cannot list snapshots"),
        }
    }
    // Newest first; at equal height, the most widely offered manifest first.
    let mut candidates: Vec<((Height, Hash), Vec<usize>)> = offers.into_iter().collect();
    candidates.sort_by(|a, b| b.0.0.cmp(&a.0.0).then(b.1.len().cmp(&a.1.len())));
    if candidates.is_empty() {
        warn!(
            servers = servers.len(),
            "no server offers a snapshot: syncing blocks from genesis instead"
        );
        return Ok(None);
    }
    for ((height, manifest_hash), holders) in candidates {
        progress.set_phase_state_sync(height);
        for &i in &holders {
            let s = &servers[i];
            let lb = match timed(
                s.sync
                    .clone()
                    .get_light_block(pb::GetLightBlockRequest { height: height.0 }),
            )
            .await
            {
                Ok(lb) => lb,
                Err(e) => {
                    warn!(server = %s.addr, %height, error = %e, "cannot fetch the light block");
                    continue;
                }
            };
            let (header, commit) = match verify_light_block(cfg, lb, height) {
                Ok(x) => x,
                Err(e) => {
                    warn!(server = %s.addr, %height, error = %e, "refusing a snapshot: its header is not certified");
                    continue;
                }
            };
            let manifest = match timed(
                s.sync
                    .clone()
                    .get_manifest(pb::GetManifestRequest { height: height.0 }),
            )
            .await
            .and_then(|m| Manifest::from_proto(m).map_err(|e| e.to_string()))
            {
                Ok(m) => m,
                Err(e) => {
                    warn!(server = %s.addr, %height, error = %e, "cannot fetch the manifest");
                    continue;
                }
            };
            if manifest.hash() != manifest_hash || manifest.height != height {
                warn!(server = %s.addr, %height, "manifest differs from the one listed");
                continue;
            }
            if let Err(e) = manifest.verify(&header.app_hash) {
                warn!(server = %s.addr, %height, error = %e, "refusing a snapshot: its manifest does not match the signed state root");
                continue;
            }
            info!(
                %height,
                chunks = manifest.chunks.len(),
                entries = manifest.entries(),
                servers = holders.len(),
                "restoring snapshot"
            );
            return Ok(Some(Target {
                manifest,
                header,
                commit,
            }));
        }
    }
    warn!("no snapshot offered could be verified: syncing blocks from genesis instead");
    Ok(None)
}

/// Shared state of the chunk fetchers.
struct Work {
    queue: VecDeque<u32>,
    done: Vec<u8>,
    remaining: usize,
    dropped: Vec<bool>,
    /// Each bucket's leaves, once the chunk holding it is written.
    leaves: Vec<Option<Vec<Leaf>>>,
    /// Chunks written since the last flush.
    unflushed: usize,
}

/// Every bucket's leaves: those `known` from the chunks this run wrote, the
/// others read from the backend (chunks written before a restart).
fn complete_leaves(
    backend: &dyn StateBackend,
    mut known: Vec<Option<Vec<Leaf>>>,
) -> Result<Vec<Vec<Leaf>>, StateError> {
    known.resize_with(BUCKETS, || None);
    let mut first = 0;
    while first < BUCKETS {
        if known[first].is_some() {
            first += 1;
            continue;
        }
        let mut end = first;
        while end < BUCKETS && known[end].is_none() {
            end += 1;
        }
        for (slot, leaves) in known[first..end]
            .iter_mut()
            .zip(scan_buckets(backend, first, end)?)
        {
            *slot = Some(leaves);
        }
        first = end;
    }
    Ok(known.into_iter().map(Option::unwrap_or_default).collect())
}

async fn restore_chunks(
    cfg: &StateSyncConfig,
    servers: &[Server],
    target: &Target,
    backend: Arc<dyn StateBackend>,
    progress: &Arc<Progress>,
) -> Result<Vec<Option<Vec<Leaf>>>, StateSyncError> {
    let height = target.manifest.height;
    let n = target.manifest.chunks.len();
    let mut done = backend.restore_progress()?;
    done.resize(n, 0);
    let queue: VecDeque<u32> = (0..n as u32).filter(|i| done[*i as usize] == 0).collect();
    let remaining = queue.len();
    progress.start_chunks(n as u64, (n - remaining) as u64);
    if remaining < n {
        info!(
            written = n - remaining,
            total = n,
            "keeping the chunks written before the restart"
        );
    }
    let leaves: Vec<Option<Vec<Leaf>>> = (0..BUCKETS).map(|_| None).collect();
    if remaining == 0 {
        return Ok(leaves);
    }
    // Only servers that list this very snapshot.
    let mut holders = Vec::new();
    let want = target.manifest.hash();
    for (s, listed) in servers.iter().zip(list_all(servers).await) {
        if let Ok(list) = listed {
            if list
                .snapshots
                .iter()
                .any(|x| x.height == height.0 && x.manifest_hash.as_ref() == want.as_bytes())
            {
                holders.push(s.clone());
            }
        }
    }
    if holders.is_empty() {
        return Err(StateSyncError::Failed {
            height,
            reason: "no server offers the snapshot being restored any more".into(),
        });
    }
    let work = Arc::new(Mutex::new(Work {
        queue,
        done,
        remaining,
        dropped: vec![false; holders.len()],
        leaves,
        unflushed: 0,
    }));
    let manifest = Arc::new(target.manifest.clone());
    // Every server's fetchers share the bound on chunks held, so that memory
    // does not grow with the number of servers.
    let in_flight = Arc::new(Semaphore::new(cfg.chunks_in_flight.max(1)));
    let mut tasks = Vec::new();
    for (si, server) in holders.iter().enumerate() {
        for _ in 0..cfg.fetchers_per_server.max(1) {
            tasks.push(tokio::spawn(fetcher(
                si,
                server.clone(),
                manifest.clone(),
                in_flight.clone(),
                work.clone(),
                backend.clone(),
                progress.clone(),
            )));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    // What the last chunks wrote (and their marks) becomes durable.
    let b = backend.clone();
    tokio::task::spawn_blocking(move || b.flush()).await??;
    let mut w = work.lock();
    if w.remaining > 0 {
        return Err(StateSyncError::Failed {
            height,
            reason: format!(
                "{} chunks left and every server offering them was dropped or failed",
                w.remaining
            ),
        });
    }
    Ok(std::mem::take(&mut w.leaves))
}

async fn fetcher(
    si: usize,
    server: Server,
    manifest: Arc<Manifest>,
    in_flight: Arc<Semaphore>,
    work: Arc<Mutex<Work>>,
    backend: Arc<dyn StateBackend>,
    progress: Arc<Progress>,
) {
    let height = manifest.height;
    let mut failures = 0;
    #[cfg(feature = "faults")]
    let throttle = Duration::from_millis(crate::faults::Faults::from_env().sync_throttle_ms);
    loop {
        // Held until the chunk is written (or given back).
        let Ok(_permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let index = {
            let mut w = work.lock();
            if w.dropped[si] {
                return;
            }
            match w.queue.pop_front() {
                Some(i) => i,
                None => return,
            }
        };
        let put_back = |work: &Mutex<Work>, drop_server: bool| {
            let mut w = work.lock();
            w.queue.push_back(index);
            if drop_server {
                w.dropped[si] = true;
            }
        };
        let started = Instant::now();
        let fetched = timed(server.sync.clone().get_chunk(pb::GetChunkRequest {
            height: height.0,
            index,
        }))
        .await;
        let bytes = match fetched {
            Ok(r) => r.chunk,
            Err(e) => {
                failures += 1;
                // NOT_FOUND: the server deleted the snapshot (it keeps only its
                // newest): no use asking it again.
                let gone = e.starts_with(&tonic::Code::NotFound.to_string());
                warn!(server = %server.addr, chunk = index, error = %e, "chunk request failed");
                put_back(&work, gone || failures >= MAX_FAILURES);
                if gone {
                    return;
                }
                continue;
            }
        };
        let m = manifest.clone();
        let checked = tokio::task::spawn_blocking(move || {
            verify_chunk(&m, index, &bytes).map(|c| (c, bytes.len()))
        })
        .await;
        let (mut chunk, size) = match checked {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                // A bad chunk: this server is dropped here; another serves it.
                warn!(server = %server.addr, chunk = index, error = %e, "dropping a server that served a bad chunk");
                put_back(&work, true);
                return;
            }
            Err(e) => {
                warn!(error = %e, "chunk check failed to run");
                put_back(&work, false);
                continue;
            }
        };
        // Write the entries and mark the chunk done; a flush makes both
        // durable (the mark is kept beside the state), once every
        // FLUSH_EVERY_CHUNKS. Should a crash ever keep a mark without its entries,
        // the root check at the end fails (chunks written before a restart
        // are read back for it) and the restore starts over: a chunk is never
        // trusted on its mark alone.
        let leaves = std::mem::take(&mut chunk.leaves);
        let first = chunk.first as usize;
        let b = backend.clone();
        let w2 = work.clone();
        let written = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let changes: Vec<Change> = chunk
                .entries
                .into_iter()
                .map(|(k, e)| (k, Some(e)))
                .collect();
            b.apply(Height(0), &changes).map_err(|e| e.to_string())?;
            // Marked once its entries are written: any progress recorded from
            // now on (by this fetcher or another) is flushed with them.
            let (done, flush) = {
                let mut w = w2.lock();
                w.done[index as usize] = 1;
                w.unflushed += 1;
                let flush = w.unflushed >= FLUSH_EVERY_CHUNKS;
                if flush {
                    w.unflushed = 0;
                }
                (w.done.clone(), flush)
            };
            b.set_restore_progress(&done).map_err(|e| e.to_string())?;
            if flush {
                b.flush().map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await;
        match written {
            Ok(Ok(())) => {
                {
                    let mut w = work.lock();
                    w.remaining -= 1;
                    for (slot, l) in w.leaves.iter_mut().skip(first).zip(leaves) {
                        *slot = Some(l);
                    }
                }
                progress.chunk_done(size as u64, started.elapsed());
                #[cfg(feature = "faults")]
                if !throttle.is_zero() {
                    tokio::time::sleep(throttle).await;
                }
            }
            Ok(Err(e)) => {
                warn!(chunk = index, error = %e, "cannot write a restored chunk");
                put_back(&work, false);
                return;
            }
            Err(e) => {
                warn!(error = %e, "chunk write failed to run");
                put_back(&work, false);
                return;
            }
        }
    }
}

/// The block of the snapshot height, from any server, checked against the header.
async fn fetch_block(servers: &[Server], target: &Target) -> Option<Block> {
    let want = target.header.id();
    for s in servers {
        let r = timed(s.node.clone().get_block(pb::GetBlockRequest {
            height: target.manifest.height.0,
        }))
        .await;
        match r.map(|r| r.block.map(Block::from_proto)) {
            Ok(Some(Ok(b))) if b.id() == want => return Some(b),
            Ok(Some(Ok(_))) => {
                warn!(server = %s.addr, "served a block that is not the certified one")
            }
            Ok(_) => warn!(server = %s.addr, "served no valid block"),
            Err(e) => warn!(server = %s.addr, error = %e, "cannot fetch the block"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::state::{Entry, MemBackend};

    #[test]
    fn leaves_not_known_are_read_back_and_known_ones_are_kept() {
        let backend: Arc<dyn StateBackend> = Arc::new(MemBackend::default());
        let changes: Vec<Change> = (0..2000u32)
            .map(|i| {
                let e = Entry {
                    key: format!("key{i}").into_bytes(),
                    value: vec![i as u8; 30],
                };
                (e.kh(), Some(e))
            })
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        backend.apply(Height(0), &changes).unwrap();
        let all = scan_buckets(backend.as_ref(), 0, BUCKETS).unwrap();
        let opened = CommittedState::open(backend.clone()).unwrap();

        // Known: every bucket but two runs (as after a restart mid-restore).
        let mut known: Vec<Option<Vec<Leaf>>> = all.iter().cloned().map(Some).collect();
        known[..700].fill(None);
        known[40_000..41_500].fill(None);
        let completed = complete_leaves(backend.as_ref(), known.clone()).unwrap();
        assert_eq!(completed, all);
        let restored = CommittedState::from_leaves(backend.clone(), completed).unwrap();
        assert_eq!(restored.committed(), opened.committed());

        // What is known is taken as is, not read again: a wrong leaf shows in
        // the root, which the restore compares with the signed one.
        let (b, _) = all.iter().enumerate().find(|(_, l)| !l.is_empty()).unwrap();
        known[b] = Some(Vec::new());
        let completed = complete_leaves(backend.as_ref(), known).unwrap();
        assert!(completed[b].is_empty());
        let wrong = CommittedState::from_leaves(backend, completed).unwrap();
        assert_ne!(wrong.committed().1, opened.committed().1);
    }
}
