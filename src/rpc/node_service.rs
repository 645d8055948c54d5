//! The node service: status, blocks, commits, validators, evidence, and the
//! operator's view of the node.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::stream::blocking;
use crate::codec::Wire;
use crate::node::{NodeStatus, Store};
use crate::pb;
use crate::pb::node_service_server::NodeService;
use crate::pki::CertInfo;
use crate::types::{Height, ValidatorSet};

/// Pieces of evidence a `ListEvidence` answer holds when the request does not say.
pub const DEFAULT_EVIDENCE_LIMIT: u32 = 100;
/// Most pieces of evidence a `ListEvidence` answer holds.
pub const MAX_EVIDENCE_LIMIT: u32 = 1000;

/// Serves [`NodeService`] from the node's status and block store.
#[derive(Clone)]
pub struct NodeApi {
    status: watch::Receiver<NodeStatus>,
    store: Arc<dyn Store>,
    validators: Arc<ValidatorSet>,
    operator: Arc<OperatorInfo>,
}

/// What `GetNodeInfo` tells besides the status, fixed when the node starts.
#[derive(Clone, Debug, Default)]
pub struct OperatorInfo {
    /// The node's organization in the genesis.
    pub organization: Option<String>,
    /// When the process started, unix milliseconds.
    pub started_at_ms: u64,
    /// The effective configuration, as TOML.
    pub config_toml: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The API's certificates: `("node" | "org_ca", what it says)`.
    pub certificates: Vec<(&'static str, CertInfo)>,
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
            operator: Arc::new(OperatorInfo::default()),
        }
    }

    /// The same, answering `GetNodeInfo` with `operator`.
    pub fn with_operator_info(self, operator: OperatorInfo) -> NodeApi {
        NodeApi {
            operator: Arc::new(operator),
            ..self
        }
    }

    /// The node's status, as it changes.
    pub fn status_watch(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
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
            peers: s.peers.iter().map(peer_to_proto).collect(),
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
        let me = self.clone();
        let height = req.into_inner().height;
        blocking(move || me.block(height)).await.map(Response::new)
    }

    async fn get_commit(
        &self,
        req: Request<pb::GetCommitRequest>,
    ) -> Result<Response<pb::GetCommitResponse>, Status> {
        let me = self.clone();
        let height = req.into_inner().height;
        blocking(move || me.commit(height)).await.map(Response::new)
    }

    async fn list_evidence(
        &self,
        req: Request<pb::ListEvidenceRequest>,
    ) -> Result<Response<pb::ListEvidenceResponse>, Status> {
        let me = self.clone();
        let req = req.into_inner();
        blocking(move || me.list_evidence_of(&req))
            .await
            .map(Response::new)
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

    async fn get_node_info(
        &self,
        _req: Request<pb::GetNodeInfoRequest>,
    ) -> Result<Response<pb::GetNodeInfoResponse>, Status> {
        let me = self.clone();
        blocking(move || Ok(me.node_info(std::time::SystemTime::now())))
            .await
            .map(Response::new)
    }
}

impl NodeApi {
    /// The answer to `GetNodeInfo` at `now` (sizes the data directory).
    fn node_info(&self, now: std::time::SystemTime) -> pb::GetNodeInfoResponse {
        let s = self.status.borrow().clone();
        let op = &self.operator;
        pb::GetNodeInfoResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            organization: op.organization.clone().unwrap_or_default(),
            moniker: s.moniker,
            node_key: s.node_key.as_bytes().to_vec().into(),
            is_validator: s.is_validator,
            started_at_ms: op.started_at_ms,
            config_toml: op.config_toml.clone(),
            data_dir: op.data_dir.display().to_string(),
            data_bytes: dir_bytes(&op.data_dir, 0),
            certificates: op
                .certificates
                .iter()
                .map(|(which, c)| pb::CertificateInfo {
                    which: which.to_string(),
                    name: c.name.clone().unwrap_or_default(),
                    organization: c.org.clone().unwrap_or_default(),
                    role: c.role.clone().unwrap_or_default(),
                    not_after: c.not_after,
                    days_left: c.days_left(now),
                })
                .collect(),
            peers: s.peers.iter().map(peer_to_proto).collect(),
            sync_phase: s.sync_phase.as_str().to_string(),
            height: s.height.0,
        }
    }

    /// The answer to `GetBlock` (reads storage).
    fn block(&self, height: u64) -> Result<pb::GetBlockResponse, Status> {
        let h = self.resolve_height(height)?;
        let block = self
            .store
            .block(h)
            .map_err(storage_status)?
            .ok_or_else(|| Status::unavailable(format!("block {h} is not stored")))?;
        Ok(pb::GetBlockResponse {
            block_id: block.id().as_bytes().to_vec().into(),
            block: Some(block.to_proto()),
        })
    }

    /// The answer to `GetCommit` (reads storage).
    fn commit(&self, height: u64) -> Result<pb::GetCommitResponse, Status> {
        let h = self.resolve_height(height)?;
        let commit = self
            .store
            .commit(h)
            .map_err(storage_status)?
            .ok_or_else(|| Status::unavailable(format!("commit {h} is not stored")))?;
        Ok(pb::GetCommitResponse {
            commit: Some(commit.to_proto()),
        })
    }

    /// The answer to `ListEvidence` (reads storage).
    fn list_evidence_of(
        &self,
        req: &pb::ListEvidenceRequest,
    ) -> Result<pb::ListEvidenceResponse, Status> {
        let limit = match req.limit {
            0 => DEFAULT_EVIDENCE_LIMIT,
            n if n > MAX_EVIDENCE_LIMIT => {
                return Err(Status::invalid_argument(format!(
                    "limit {n} is above the maximum of {MAX_EVIDENCE_LIMIT}"
                )));
            }
            n => n,
        };
        let latest = self.store.latest_height();
        let from = Height(req.from_height.max(1));
        let to = if req.to_height == 0 {
            latest
        } else {
            Height(req.to_height)
        };
        if req.to_height != 0 && from > to {
            return Err(Status::invalid_argument(format!(
                "from_height {from} is above to_height {to}"
            )));
        }
        // One more than asked tells whether the range holds more.
        let mut found = self
            .store
            .list_evidence(from, to, limit as usize + 1)
            .map_err(storage_status)?;
        let truncated = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok(pb::ListEvidenceResponse {
            evidence: found
                .into_iter()
                .map(|c| {
                    let crate::types::Evidence::DuplicateVote(d) = &c.evidence;
                    pb::CommittedEvidence {
                        height: c.height.0,
                        hash: c.evidence.hash().as_bytes().to_vec().into(),
                        validator: d.first.validator.as_bytes().to_vec().into(),
                        evidence: Some(c.evidence.to_proto()),
                    }
                })
                .collect(),
            truncated,
        })
    }
}

/// A peer as `GetStatus` and `GetNodeInfo` show it.
fn peer_to_proto(p: &crate::node::PeerStatus) -> pb::PeerInfo {
    pb::PeerInfo {
        public_key: p.key.as_bytes().to_vec().into(),
        name: p.name.clone(),
        address: p.address.clone(),
        connected: p.connected,
        height: p.height.0,
    }
}

/// Directory levels [`dir_bytes`] descends (sled's layout is two deep).
const MAX_DIR_DEPTH: usize = 4;

/// Bytes the files under `dir` take (0 for what cannot be read).
fn dir_bytes(dir: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() && depth < MAX_DIR_DEPTH => dir_bytes(&e.path(), depth + 1),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{EvidenceStore, MemStore};
    use crate::types::{DuplicateVote, Evidence, Hash, Keypair, Round, Timestamp, Vote, VoteType};

    fn api_with_evidence(n: u64) -> NodeApi {
        let k = Keypair::from_seed([1; 32]);
        let set = ValidatorSet::equal_power([&k]);
        let store = MemStore::new();
        for h in 1..=n {
            let v = |id: &[u8]| {
                Vote::new_signed(
                    &k,
                    "c",
                    VoteType::Prevote,
                    Height(h),
                    Round(0),
                    Some(Hash::digest(id)),
                    Timestamp(0),
                )
            };
            let ev = Evidence::DuplicateVote(DuplicateVote::new(v(b"a"), v(b"b")).unwrap());
            store.index_evidence(Height(h + 1), &[ev]).unwrap();
        }
        let status = NodeStatus::new("c".into(), "m".into(), k.public(), true);
        let (_tx, rx) = watch::channel(status);
        NodeApi::new(rx, Arc::new(store), Arc::new(set))
    }

    fn req(from: u64, to: u64, limit: u32) -> pb::ListEvidenceRequest {
        pb::ListEvidenceRequest {
            from_height: from,
            to_height: to,
            limit,
        }
    }

    #[test]
    fn list_evidence_ranges_and_limits() {
        // No block is stored: the latest height is 0, so nothing is listed.
        let api = api_with_evidence(5);
        assert!(
            api.list_evidence_of(&req(0, 0, 0))
                .unwrap()
                .evidence
                .is_empty()
        );
        let r = api.list_evidence_of(&req(2, 4, 0)).unwrap();
        let heights: Vec<u64> = r.evidence.iter().map(|e| e.height).collect();
        assert_eq!(heights, vec![2, 3, 4]);
        assert!(!r.truncated);
        for e in &r.evidence {
            let ev = Evidence::from_proto(e.evidence.clone().unwrap()).unwrap();
            assert_eq!(e.hash.as_ref(), ev.hash().as_bytes());
        }
        let r = api.list_evidence_of(&req(1, 100, 2)).unwrap();
        assert_eq!(r.evidence.len(), 2);
        assert!(r.truncated);
        let err = api.list_evidence_of(&req(5, 4, 0)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = api
            .list_evidence_of(&req(1, 2, MAX_EVIDENCE_LIMIT + 1))
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
