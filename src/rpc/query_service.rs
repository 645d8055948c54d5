//! The query service: accounts and records, with proofs against signed headers.

use std::sync::Arc;

use bytes::Bytes;
use tonic::{Request, Response, Status};

use super::Ready;
use super::stream::blocking;
use super::tx_service::signed_header;
use crate::app::ledger::{Account, account_key, record_key};
use crate::app::state::{StateProof, Terminal};
use crate::app::{AppError, Application, QueryResult};
use crate::node::Store;
use crate::pb;
use crate::pb::query_service_server::QueryService;
use crate::types::PublicKey;

#[derive(Clone)]
struct Inner {
    app: Arc<dyn Application>,
    store: Arc<dyn Store>,
}

/// Serves [`QueryService`]; answers UNAVAILABLE until the node follows the chain.
#[derive(Clone)]
pub struct QueryApi {
    inner: Ready<Inner>,
}

impl Default for QueryApi {
    fn default() -> QueryApi {
        QueryApi::new()
    }
}

impl QueryApi {
    /// A service that is not ready yet.
    pub fn new() -> QueryApi {
        QueryApi {
            inner: Ready::new(),
        }
    }

    /// Makes the service answer from a node's application and store.
    pub fn ready(&self, app: Arc<dyn Application>, store: Arc<dyn Store>) {
        self.inner.set(Inner { app, store });
    }

    /// The value at `key` with its proof and the signed header of its
    /// height, read on the blocking pool.
    async fn query(&self, key: Vec<u8>) -> Result<(QueryResult, pb::SignedHeader), Status> {
        let i = self.inner.get()?.clone();
        blocking(move || i.query(&key)).await
    }
}

impl Inner {
    fn query(&self, key: &[u8]) -> Result<(QueryResult, pb::SignedHeader), Status> {
        let i = self;
        let q = i.app.query(key).map_err(|e| match e {
            AppError::Internal(m) => Status::internal(m),
            other => Status::failed_precondition(other.to_string()),
        })?;
        if q.height.0 == 0 {
            return Err(Status::unavailable("no block is committed yet"));
        }
        let header = signed_header(i.store.as_ref(), q.height)?;
        Ok((q, header))
    }
}

/// The proof on the wire.
pub fn proof_to_proto(p: &StateProof) -> pb::StateProof {
    let (kh, vh) = match &p.terminal {
        Terminal::Empty => (Bytes::new(), Bytes::new()),
        Terminal::Leaf { kh, value_hash } => (
            Bytes::copy_from_slice(kh.as_bytes()),
            Bytes::copy_from_slice(value_hash.as_bytes()),
        ),
    };
    pb::StateProof {
        siblings: p
            .siblings
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect(),
        leaf_key_hash: kh,
        leaf_value_hash: vh,
    }
}

fn key_arg(field: &'static str, b: &[u8]) -> Result<PublicKey, Status> {
    PublicKey::from_bytes(b).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

#[tonic::async_trait]
impl QueryService for QueryApi {
    async fn get_account(
        &self,
        req: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let owner = key_arg("address", &req.into_inner().address)?;
        let (q, header) = self.query(account_key(&owner)).await?;
        let acc = match &q.value {
            Some(v) => {
                Some(Account::decode(v).ok_or_else(|| Status::internal("corrupt account entry"))?)
            }
            None => None,
        };
        Ok(Response::new(pb::GetAccountResponse {
            found: acc.is_some(),
            balance: acc.map_or(0, |a| a.balance),
            nonce: acc.map_or(0, |a| a.nonce),
            proof: Some(proof_to_proto(&q.proof)),
            header: Some(header),
        }))
    }

    async fn get_record(
        &self,
        req: Request<pb::GetRecordRequest>,
    ) -> Result<Response<pb::GetRecordResponse>, Status> {
        let req = req.into_inner();
        let owner = key_arg("owner", &req.owner)?;
        if req.name.is_empty() || req.name.len() > crate::app::ledger::MAX_NAME_BYTES {
            return Err(Status::invalid_argument(format!(
                "name must be 1 to {} bytes",
                crate::app::ledger::MAX_NAME_BYTES
            )));
        }
        let (q, header) = self.query(record_key(&owner, &req.name)).await?;
        Ok(Response::new(pb::GetRecordResponse {
            found: q.value.is_some(),
            value: q.value.map(Bytes::from).unwrap_or_default(),
            proof: Some(proof_to_proto(&q.proof)),
            header: Some(header),
        }))
    }
}
