//! The sync service: snapshots, light blocks and block ranges for nodes that
//! catch up.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{resolve_height, storage_status};
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
    faults: crate::faults::Faults,
    /// What `list_snapshots` says of each stored snapshot, by height. A
    /// snapshot never changes once its manifest is written, and reading,
    /// decoding and hashing a manifest (tens of thousands of bucket roots)
    /// took tens of milliseconds a snapshot and a request.
    listed: Arc<Mutex<HashMap<u64, pb::SnapshotInfo>>>,
}

impl SyncApi {
    /// A service over `store`.
    pub fn new(store: Arc<dyn Store>) -> SyncApi {
        SyncApi {
            store,
            faults: crate::faults::Faults::from_env(),
            listed: Arc::default(),
        }
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

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SyncService for SyncApi {
    async fn list_snapshots(
        &self,
        _req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let mut heights = self.store.snapshot_heights().map_err(storage_status)?;
        heights.reverse();
        let mut listed = self.listed.lock().unwrap_or_else(|e| e.into_inner());
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
        Ok(Response::new(pb::ListSnapshotsResponse { snapshots }))
    }

    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::SnapshotManifest>, Status> {
        Ok(Response::new(self.manifest(req.into_inner().height)?))
    }

    async fn get_chunk(
        &self,
        req: Request<pb::GetChunkRequest>,
    ) -> Result<Response<pb::GetChunkResponse>, Status> {
        let r = req.into_inner();
        let chunk = self
            .store
            .snapshot_chunk(Height(r.height), r.index)
            .map_err(storage_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no chunk {} of snapshot {} here",
                    r.index, r.height
                ))
            })?;
        let mut chunk = chunk;
        if self.faults.serve_corrupt_chunks && !chunk.is_empty() {
            // Test misbehaviour: a flipped byte.
            let i = chunk.len() / 2;
            chunk[i] ^= 0x55;
        }
        Ok(Response::new(pb::GetChunkResponse {
            chunk: chunk.into(),
        }))
    }

    async fn get_light_block(
        &self,
        req: Request<pb::GetLightBlockRequest>,
    ) -> Result<Response<pb::LightBlock>, Status> {
        let h = resolve_height(self.store.as_ref(), req.into_inner().height)?;
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
        let mut header = block.header;
        if self.faults.serve_forged_light_blocks {
            // Test misbehaviour: a header the commit does not sign.
            header.app_hash = crate::types::Hash::digest(b"forged state root");
        }
        Ok(Response::new(pb::LightBlock {
            header: Some(header.to_proto()),
            commit: Some(commit.to_proto()),
        }))
    }

    type StreamBlockRangeStream = BoxStream<pb::BlockWithCommit>;

    async fn stream_block_range(
        &self,
        req: Request<pb::StreamBlockRangeRequest>,
    ) -> Result<Response<Self::StreamBlockRangeStream>, Status> {
        let r = req.into_inner();
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
        let store = self.store.clone();
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(async move {
            for h in from.0..=to.0 {
                let item = match (store.block(Height(h)), store.commit(Height(h))) {
                    (Ok(Some(b)), Ok(Some(c))) => Ok(pb::BlockWithCommit {
                        block: Some(b.to_proto()),
                        commit: Some(c.to_proto()),
                    }),
                    (Err(e), _) | (_, Err(e)) => Err(storage_status(e)),
                    _ => Err(Status::unavailable(format!("block {h} is pruned"))),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
