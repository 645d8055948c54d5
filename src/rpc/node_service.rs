//! The node service: status, blocks, commits and validators.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::codec::Wire;
use crate::node::{NodeStatus, Store};
use crate::pb;
use crate::pb::node_service_server::NodeService;
use crate::types::{Height, ValidatorSet};

/// Serves [`NodeService`] from the node's status and block store.
#[derive(Clone)]
pub struct NodeApi {
    status: watch::Receiver<NodeStatus>,
    store: Arc<dyn Store>,
    validators: Arc<ValidatorSet>,
}

impl NodeApi {
    /// A service over a running node's state.
    pub fn new(
        status: watch::Receiver<NodeStatus>,
        store: Arc<dyn Store>,
        validators: Arc<ValidatorSet>,
    ) -> NodeApi {
        NodeApi {
            status,
            store,
            validators,
        }
    }

    /// Resolves a requested height (0 = latest) to a stored one, or the status a
    /// client should see.
    pub fn resolve_height(&self, requested: u64) -> Result<Height, Status> {
        resolve_height(self.store.as_ref(), requested)
    }
}

/// Resolves a requested height (0 = latest) against a store: NOT_FOUND above the
/// tip, UNAVAILABLE below the base (pruned or restored from a snapshot).
pub fn resolve_height(store: &dyn Store, requested: u64) -> Result<Height, Status> {
    let latest = store.latest_height();
    if latest.0 == 0 {
        return Err(Status::unavailable("no block is stored yet"));
    }
    let h = if requested == 0 {
        latest
    } else {
        Height(requested)
    };
    if h > latest {
        return Err(Status::not_found(format!(
            "height {h} is above the latest height {latest}"
        )));
    }
    let base = store.base_height();
    if h < base {
        return Err(Status::unavailable(format!(
            "height {h} is pruned on this node (lowest stored height is {base})"
        )));
    }
    Ok(h)
}

/// Maps a storage error to an INTERNAL status (the details are logged, not sent).
pub fn storage_status(e: crate::storage::StorageError) -> Status {
    tracing::error!(error = %e, "storage error while serving a request");
    Status::internal("storage error")
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let s = self.status.borrow().clone();
        let lag = crate::node::now_ms().millis_since(s.latest_block_time) as f64 / 1000.0;
        Ok(Response::new(pb::GetStatusResponse {
            chain_id: s.chain_id,
            moniker: s.moniker,
            node_key: s.node_key.as_bytes().to_vec().into(),
            height: s.height.0,
            latest_block_hash: s
                .latest_block_hash
                .map(|h| h.as_bytes().to_vec().into())
                .unwrap_or_default(),
            latest_block_time_ms: s.latest_block_time.0,
            round: s.round.0,
            step: s.step.to_string(),
            catching_up: s.catching_up,
            peers: s
                .peers
                .iter()
                .map(|p| pb::PeerInfo {
                    public_key: p.key.as_bytes().to_vec().into(),
                    name: p.name.clone(),
                    address: p.address.clone(),
                    connected: p.connected,
                })
                .collect(),
            is_validator: s.is_validator,
            base_height: s.base_height.0,
            sync_phase: s.sync_phase.as_str().to_string(),
            peer_max_height: s.peer_max_height.0,
            lag_seconds: if s.height.0 == 0 { 0.0 } else { lag },
        }))
    }

    async fn get_block(
        &self,
        req: Request<pb::GetBlockRequest>,
    ) -> Result<Response<pb::GetBlockResponse>, Status> {
        let h = self.resolve_height(req.into_inner().height)?;
        let block = self
            .store
            .block(h)
            .map_err(storage_status)?
            .ok_or_else(|| Status::unavailable(format!("block {h} is not stored")))?;
        Ok(Response::new(pb::GetBlockResponse {
            block_id: block.id().as_bytes().to_vec().into(),
            block: Some(block.to_proto()),
        }))
    }

    async fn get_commit(
        &self,
        req: Request<pb::GetCommitRequest>,
    ) -> Result<Response<pb::GetCommitResponse>, Status> {
        let h = self.resolve_height(req.into_inner().height)?;
        let commit = self
            .store
            .commit(h)
            .map_err(storage_status)?
            .ok_or_else(|| Status::unavailable(format!("commit {h} is not stored")))?;
        Ok(Response::new(pb::GetCommitResponse {
            commit: Some(commit.to_proto()),
        }))
    }

    async fn get_validators(
        &self,
        _req: Request<pb::GetValidatorsRequest>,
    ) -> Result<Response<pb::GetValidatorsResponse>, Status> {
        Ok(Response::new(pb::GetValidatorsResponse {
            validators: self
                .validators
                .validators()
                .iter()
                .map(Wire::to_proto)
                .collect(),
            total_power: self.validators.total_power(),
        }))
    }
}
