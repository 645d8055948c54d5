//! The sync service: snapshots, light blocks and block ranges for nodes that
//! catch up.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use super::stream::{ReadAhead, blocking, read_ahead};
use super::{StreamSlots, resolve_height, storage_status};
use crate::codec::Wire;
use crate::node::Store;
use crate::pb;
use crate::pb::sync_service_server::SyncService;
use crate::types::Height;

/// Most blocks one range request streams.
pub const MAX_RANGE: u64 = 10_000;

/// Serves [`SyncService`] from a node's store.
#[derive(Clone)]
pub struct SyncApi {
    store: Arc<dyn Store>,
    #[cfg(feature = "faults")]
    faults: crate::faults::Faults,
    /// What `list_snapshots` says of each stored snapshot, by height. A
    /// snapshot never changes once its manifest is written, and reading,
    /// decoding and hashing a manifest (tens of thousands of bucket roots)
    /// took tens of milliseconds a snapshot and a request.
    listed: Arc<Mutex<HashMap<u64, pb::SnapshotInfo>>>,
    streams: StreamSlots,
}

/// Blocks a range stream reads in one trip to the blocking pool, at most.
const RANGE_BATCH: u64 = 64;
/// Bytes of blocks a range stream reads in one trip, at most (plus a block).
const RANGE_BATCH_BYTES: usize = 1024 * 1024;

impl SyncApi {
    /// A service over `store`.
    pub fn new(store: Arc<dyn Store>) -> SyncApi {
        SyncApi {
            store,
            #[cfg(feature = "faults")]
            faults: crate::faults::Faults::from_env(),
            listed: Arc::default(),
            streams: StreamSlots::default(),
        }
    }

    /// The service with block-range streams counted against `streams`.
    pub fn with_stream_slots(self, streams: StreamSlots) -> SyncApi {
        SyncApi { streams, ..self }
    }

    fn manifest(&self, height: u64) -> Result<pb::SnapshotManifest, Status> {
        let bytes = self
            .store
            .snapshot_manifest(Height(height))
            .map_err(storage_status)?
            .ok_or_else(|| Status::not_found(format!("no snapshot of height {height} here")))?;
        pb::SnapshotManifest::decode(bytes.as_slice())
            .map_err(|e| Status::internal(format!("stored manifest: {e}")))
    }
}

impl SyncApi {
    /// The answer to `ListSnapshots` (reads storage).
    fn snapshots(&self) -> Result<pb::ListSnapshotsResponse, Status> {
        let mut heights = self.store.snapshot_heights().map_err(storage_status)?;
        heights.reverse();
        let mut listed = self.listed.lock();
        // Forget deleted snapshots.
        listed.retain(|h, _| heights.contains(&Height(*h)));
        let mut snapshots = Vec::new();
        for h in heights {
            if let Some(info) = listed.get(&h.0) {
                snapshots.push(info.clone());
                continue;
            }
            let Ok(m) = self.manifest(h.0) else { continue };
            let hash = crate::types::Hash::digest(&m.encode_to_vec());
            let info = pb::SnapshotInfo {
                height: m.height,
                format: m.format,
                chunks: m.chunks.len() as u32,
                state_root: m.state_root.clone(),
                manifest_hash: hash.as_bytes().to_vec().into(),
                entries: m.buckets.iter().map(|b| b.count).sum(),
                bytes: 0,
            };
            listed.insert(h.0, info.clone());
            snapshots.push(info);
        }
        Ok(pb::ListSnapshotsResponse { snapshots })
    }

    /// The answer to `GetChunk` (reads storage).
    fn chunk(&self, r: pb::GetChunkRequest) -> Result<pb::GetChunkResponse, Status> {
        #[cfg_attr(not(feature = "faults"), allow(unused_mut))]
        let mut chunk = self
            .store
            .snapshot_chunk(Height(r.height), r.index)
            .map_err(storage_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no chunk {} of snapshot {} here",
                    r.index, r.height
                ))
            })?;
        #[cfg(feature = "faults")]
        if self.faults.serve_corrupt_chunks && !chunk.is_empty() {
            // Test misbehaviour: a flipped byte.
            let i = chunk.len() / 2;
            chunk[i] ^= 0x55;
        }
        Ok(pb::GetChunkResponse {
            chunk: chunk.into(),
        })
    }

    /// The answer to `GetLightBlock` (reads storage).
    fn light_block(&self, height: u64) -> Result<pb::LightBlock, Status> {
        let h = resolve_height(self.store.as_ref(), height)?;
        let block = self
            .store
            .block(h)
            .map_err(storage_status)?
            .ok_or_else(|| Status::unavailable(format!("block {h} is not stored")))?;
        let commit = self
            .store
            .commit(h)
            .map_err(storage_status)?
            .ok_or_else(|| Status::unavailable(format!("commit {h} is not stored")))?;
        #[cfg_attr(not(feature = "faults"), allow(unused_mut))]
        let mut header = block.header;
        #[cfg(feature = "faults")]
        if self.faults.serve_forged_light_blocks {
            // Test misbehaviour: a header the commit does not sign.
            header.app_hash = crate::types::Hash::digest(b"forged state root");
        }
        Ok(pb::LightBlock {
            header: Some(header.to_proto()),
            commit: Some(commit.to_proto()),
        })
    }

    /// The range `from..=to` of a `StreamBlockRange` request, checked against
    /// what is stored (reads storage).
    fn range(&self, r: &pb::StreamBlockRangeRequest) -> Result<(Height, Height), Status> {
        let from = resolve_height(self.store.as_ref(), r.from_height.max(1))?;
        let latest = self.store.latest_height();
        let to = if r.to_height == 0 {
            latest
        } else {
            Height(r.to_height.min(latest.0))
        };
        if to < from {
            return Err(Status::invalid_argument(format!(
                "empty range {from}..={to}"
            )));
        }
        if to.0 - from.0 >= MAX_RANGE {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_RANGE} blocks per request"
            )));
        }
        Ok((from, to))
    }
}

/// Blocks with their commits from `from` up to `to`, stopping after
/// [`RANGE_BATCH`] blocks or [`RANGE_BATCH_BYTES`]; each with its encoded size.
/// An error ends the batch (and the stream).
fn read_range(
    store: &dyn Store,
    from: u64,
    to: u64,
) -> Vec<(Result<pb::BlockWithCommit, Status>, usize)> {
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut h = from;
    while h <= to && (out.len() as u64) < RANGE_BATCH && bytes < RANGE_BATCH_BYTES {
        let item = match (store.block(Height(h)), store.commit(Height(h))) {
            (Ok(Some(b)), Ok(Some(c))) => Ok(pb::BlockWithCommit {
                block: Some(b.to_proto()),
                commit: Some(c.to_proto()),
            }),
            (Err(e), _) | (_, Err(e)) => Err(storage_status(e)),
            _ => Err(Status::unavailable(format!("block {h} is pruned"))),
        };
        let size = item.as_ref().map_or(0, Message::encoded_len);
        let stop = item.is_err();
        bytes += size;
        out.push((item, size));
        if stop {
            break;
        }
        h += 1;
    }
    out
}

#[tonic::async_trait]
impl SyncService for SyncApi {
    async fn list_snapshots(
        &self,
        _req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let me = self.clone();
        blocking(move || me.snapshots()).await.map(Response::new)
    }

    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::SnapshotManifest>, Status> {
        let me = self.clone();
        let height = req.into_inner().height;
        blocking(move || me.manifest(height))
            .await
            .map(Response::new)
    }

    async fn get_chunk(
        &self,
        req: Request<pb::GetChunkRequest>,
    ) -> Result<Response<pb::GetChunkResponse>, Status> {
        let me = self.clone();
        let r = req.into_inner();
        blocking(move || me.chunk(r)).await.map(Response::new)
    }

    async fn get_light_block(
        &self,
        req: Request<pb::GetLightBlockRequest>,
    ) -> Result<Response<pb::LightBlock>, Status> {
        let me = self.clone();
        let height = req.into_inner().height;
        blocking(move || me.light_block(height))
            .await
            .map(Response::new)
    }

    type StreamBlockRangeStream = ReadAhead<pb::BlockWithCommit>;

    async fn stream_block_range(
        &self,
        req: Request<pb::StreamBlockRangeRequest>,
    ) -> Result<Response<Self::StreamBlockRangeStream>, Status> {
        let slot = self
            .streams
            .acquire(req.remote_addr(), super::auth::caller(&req))?;
        let r = req.into_inner();
        let me = self.clone();
        let (from, to) = blocking(move || me.range(&r)).await?;
        let store = self.store.clone();
        let (ahead, stream) = read_ahead(slot);
        tokio::spawn(async move {
            let mut next = from.0;
            while next <= to.0 {
                let s = store.clone();
                let from = next;
                let batch = blocking(move || Ok(read_range(s.as_ref(), from, to.0))).await;
                let batch = batch.unwrap_or_else(|e| vec![(Err(e), 0)]);
                for (item, size) in batch {
                    let stop = item.is_err();
                    if !ahead.send(item, size).await || stop {
                        return;
                    }
                    next += 1;
                }
            }
        });
        Ok(Response::new(stream))
    }
}
