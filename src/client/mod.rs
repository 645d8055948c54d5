//! A Rust client of the consort gRPC API, used by the CLI and the tests.

pub mod verify;

use std::time::Duration;

use bytes::Bytes;
use tonic::transport::{Channel, Endpoint};

use crate::codec::{CodecError, Wire};
use crate::pb;
use crate::pb::node_service_client::NodeServiceClient;
use crate::pb::query_service_client::QueryServiceClient;
use crate::pb::sync_service_client::SyncServiceClient;
use crate::pb::tx_service_client::TxServiceClient;
pub use crate::pki::ClientTls;
use crate::types::{Block, BlockId, Commit, Evidence, Hash, Header, Height, Validator};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not usable.
    #[error("bad node address {addr:?}: {reason}")]
    Address {
        /// The address given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Could not connect.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The node answered with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The node's answer does not decode into valid values.
    #[error("invalid answer: {0}")]
    Invalid(#[from] CodecError),
    /// The answer lacks a field.
    #[error("answer lacks {0}")]
    Missing(&'static str),
}

/// A connection to one node.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
}

/// The status of a node, as the API reports it.
pub type Status = pb::GetStatusResponse;

/// TLS settings [`Client::connect`] uses, set once by a program (the CLI's
/// `--ca`, `--cert`, `--key`).
static DEFAULT_TLS: std::sync::OnceLock<ClientTls> = std::sync::OnceLock::new();

/// Makes [`Client::connect`] use `tls` in this process (only the first call
/// counts).
pub fn set_default_tls(tls: ClientTls) {
    let _ = DEFAULT_TLS.set(tls);
}

impl Client {
    /// Connects to `addr` (`host:port`, or a full `http://` URL): over TLS
    /// with the settings of [`set_default_tls`] if a program made any, in
    /// plaintext otherwise.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Client::connect_with(addr, DEFAULT_TLS.get()).await
    }

    /// Connects to `addr`, over TLS with `tls` (the node's certificate
    /// checked against its CAs, ours presented), or in plaintext without.
    pub async fn connect_with(addr: &str, tls: Option<&ClientTls>) -> Result<Client, ClientError> {
        let bad = |reason: String| ClientError::Address {
            addr: addr.to_string(),
            reason,
        };
        let endpoint = match tls {
            Some(t) => {
                let bare = addr
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                t.endpoint(bare).map_err(bad)?
            }
            None => {
                let url = if addr.starts_with("http://") || addr.starts_with("https://") {
                    addr.to_string()
                } else {
                    format!("http://{addr}")
                };
                Endpoint::from_shared(url).map_err(|e| bad(e.to_string()))?
            }
        };
        let channel = endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Client { channel })
    }

    /// The underlying channel, for other generated clients.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn node(&self) -> NodeServiceClient<Channel> {
        NodeServiceClient::new(self.channel.clone()).max_decoding_message_size(64 * 1024 * 1024)
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        Ok(self
            .node()
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner())
    }

    /// The operator's view of the node (needs an `admin` certificate of the
    /// node's organization).
    pub async fn node_info(&self) -> Result<pb::GetNodeInfoResponse, ClientError> {
        Ok(self
            .node()
            .get_node_info(pb::GetNodeInfoRequest {})
            .await?
            .into_inner())
    }

    /// The block at `height` (0 = latest) and its id.
    pub async fn block(&self, height: u64) -> Result<(Block, BlockId), ClientError> {
        let r = self
            .node()
            .get_block(pb::GetBlockRequest { height })
            .await?
            .into_inner();
        let block = Block::from_proto(r.block.ok_or(ClientError::Missing("block"))?)?;
        let id = crate::codec::hash_field("block_id", &r.block_id)?;
        Ok((block, id))
    }

    /// The commit of `height` (0 = latest).
    pub async fn commit(&self, height: u64) -> Result<Commit, ClientError> {
        let r = self
            .node()
            .get_commit(pb::GetCommitRequest { height })
            .await?
            .into_inner();
        Ok(Commit::from_proto(
            r.commit.ok_or(ClientError::Missing("commit"))?,
        )?)
    }

    /// The header and commit of `height` (0 = latest).
    pub async fn light_block(&self, height: u64) -> Result<(Header, Commit), ClientError> {
        let r = SyncServiceClient::new(self.channel.clone())
            .get_light_block(pb::GetLightBlockRequest { height })
            .await?
            .into_inner();
        let header = Header::from_proto(r.header.ok_or(ClientError::Missing("header"))?)?;
        let commit = Commit::from_proto(r.commit.ok_or(ClientError::Missing("commit"))?)?;
        Ok((header, commit))
    }

    fn txs(&self) -> TxServiceClient<Channel> {
        TxServiceClient::new(self.channel.clone()).max_decoding_message_size(64 * 1024 * 1024)
    }

    fn queries(&self) -> QueryServiceClient<Channel> {
        QueryServiceClient::new(self.channel.clone())
    }

    /// Submits an encoded transaction; with `wait`, returns once it is committed.
    pub async fn submit(&self, tx: Bytes, wait: bool) -> Result<pb::SubmitResponse, ClientError> {
        let mode = if wait {
            pb::SubmitMode::Committed
        } else {
            pb::SubmitMode::Accepted
        };
        Ok(self
            .txs()
            .submit(pb::SubmitRequest {
                tx,
                mode: mode as i32,
            })
            .await?
            .into_inner())
    }

    /// Submits encoded transactions over one `SubmitStream` and returns, in
    /// order, each one's hash if it was admitted to the mempool or the status
    /// that refused it. Much cheaper than one [`Client::submit`] each.
    pub async fn submit_many(
        &self,
        txs: Vec<Bytes>,
    ) -> Result<Vec<Result<Hash, tonic::Status>>, ClientError> {
        let n = txs.len();
        let requests = tokio_stream::iter(txs.into_iter().map(|tx| pb::SubmitStreamRequest { tx }));
        let mut answers = self.txs().submit_stream(requests).await?.into_inner();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(a) = answers.message().await? else {
                return Err(ClientError::Status(tonic::Status::unavailable(format!(
                    "the submit stream ended after {} of {n} answers",
                    out.len()
                ))));
            };
            out.push(if a.code == 0 {
                Hash::from_slice(&a.hash)
                    .map_err(|e| tonic::Status::internal(format!("answer hash: {e}")))
            } else {
                Err(tonic::Status::new(
                    tonic::Code::from(a.code as i32),
                    a.message,
                ))
            });
        }
        Ok(out)
    }

    /// A committed transaction with its proof.
    pub async fn get_tx(&self, hash: &Hash) -> Result<pb::GetTxResponse, ClientError> {
        Ok(self
            .txs()
            .get_tx(pb::GetTxRequest {
                hash: Bytes::copy_from_slice(hash.as_bytes()),
            })
            .await?
            .into_inner())
    }

    /// Committed blocks from `from` on (0 = from the next one).
    pub async fn stream_blocks(
        &self,
        from: u64,
    ) -> Result<tonic::Streaming<pb::StreamBlocksResponse>, ClientError> {
        Ok(self
            .txs()
            .stream_blocks(pb::StreamBlocksRequest { from_height: from })
            .await?
            .into_inner())
    }

    /// Transaction results from `from` on, optionally of one sender.
    pub async fn stream_tx_results(
        &self,
        from: u64,
        sender: Option<&crate::types::PublicKey>,
    ) -> Result<tonic::Streaming<pb::TxResultEvent>, ClientError> {
        Ok(self
            .txs()
            .stream_tx_results(pb::StreamTxResultsRequest {
                from_height: from,
                sender: sender
                    .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                    .unwrap_or_default(),
            })
            .await?
            .into_inner())
    }

    /// An account with its proof.
    pub async fn account(
        &self,
        address: &crate::types::PublicKey,
    ) -> Result<pb::GetAccountResponse, ClientError> {
        Ok(self
            .queries()
            .get_account(pb::GetAccountRequest {
                address: Bytes::copy_from_slice(address.as_bytes()),
            })
            .await?
            .into_inner())
    }

    /// A record with its proof.
    pub async fn record(
        &self,
        owner: &crate::types::PublicKey,
        name: &str,
    ) -> Result<pb::GetRecordResponse, ClientError> {
        Ok(self
            .queries()
            .get_record(pb::GetRecordRequest {
                owner: Bytes::copy_from_slice(owner.as_bytes()),
                name: name.to_string(),
            })
            .await?
            .into_inner())
    }

    /// The validator set.
    pub async fn validators(&self) -> Result<Vec<Validator>, ClientError> {
        let r = self
            .node()
            .get_validators(pb::GetValidatorsRequest {})
            .await?
            .into_inner();
        r.validators
            .into_iter()
            .map(|v| Validator::from_proto(v).map_err(ClientError::from))
            .collect()
    }

    /// Evidence committed in blocks `from..=to` (0 = latest), at most `limit`
    /// pieces (0 = the server's default), with the height that committed each.
    pub async fn list_evidence(
        &self,
        from: u64,
        to: u64,
        limit: u32,
    ) -> Result<Vec<(Height, Evidence)>, ClientError> {
        let r = self
            .node()
            .list_evidence(pb::ListEvidenceRequest {
                from_height: from,
                to_height: to,
                limit,
            })
            .await?
            .into_inner();
        r.evidence
            .into_iter()
            .map(|e| {
                let ev = Evidence::from_proto(
                    e.evidence
                        .ok_or(crate::codec::CodecError::Missing("evidence"))?,
                )?;
                Ok((Height(e.height), ev))
            })
            .collect()
    }
}

/// Hex of a hash, or "" for none.
pub fn hex_or_empty(h: Option<Hash>) -> String {
    h.map(|h| h.to_hex()).unwrap_or_default()
}
