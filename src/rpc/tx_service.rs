//! The transaction service: submit, look up, and follow committed blocks and
//! transaction results.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::stream::{ReadAhead, Slotted, blocking, read_ahead};
use super::{Ready, StreamSlots, resolve_height, storage_status};
use crate::app::{RejectCode, TxResult};
use crate::codec::{Wire, decode_outcome, decode_tx};
use crate::mempool::MempoolError;
use crate::node::Store;
use crate::node::notify::TxOutcome;
use crate::node::txpool::{SubmitError, TxPool};
use crate::pb;
use crate::pb::tx_service_server::TxService;
use crate::types::{Block, Hash, Height, merkle};

/// How long Submit in COMMITTED mode waits before answering DEADLINE_EXCEEDED.
pub const COMMIT_WAIT: Duration = Duration::from_secs(60);
/// Answers buffered per submit stream before it waits for its client.
const STREAM_BUFFER: usize = 64;
/// Blocks a block or result stream reads in one trip to the blocking pool.
const READ_BATCH: u64 = 64;
/// Bytes of blocks such a stream reads in one trip, at most (plus a block).
const READ_BATCH_BYTES: usize = 1024 * 1024;

struct Inner {
    pool: Arc<TxPool>,
    store: Arc<dyn Store>,
}

/// Serves [`TxService`]; answers UNAVAILABLE until the node follows the chain.
#[derive(Clone)]
pub struct TxApi {
    inner: Ready<Inner>,
    streams: StreamSlots,
}

impl Default for TxApi {
    fn default() -> TxApi {
        TxApi::new()
    }
}

impl TxApi {
    /// A service that is not ready yet.
    pub fn new() -> TxApi {
        TxApi {
            inner: Ready::new(),
            streams: StreamSlots::default(),
        }
    }

    /// The service with its streaming calls counted against `streams`.
    pub fn with_stream_slots(self, streams: StreamSlots) -> TxApi {
        TxApi { streams, ..self }
    }

    /// Makes the service answer from a node's pool and store.
    pub fn ready(&self, pool: Arc<TxPool>, store: Arc<dyn Store>) {
        self.inner.set(Inner { pool, store });
    }
}

/// Answers waiting on one submit stream before it stops reading requests.
const SUBMIT_WINDOW: usize = 1024;

/// A transaction read from a submit stream.
enum Queued {
    /// Queued for admission.
    Waiting(Hash, crate::node::txpool::Answer),
    /// Refused before it was queued (full, or over its sender's quota).
    Refused(Hash, Status),
    /// The request stream failed (a message too large, a broken connection).
    Failed(Status),
}

/// One answer of a submit stream; `refused` is None if admitted.
fn stream_answer(hash: Hash, refused: Option<Status>) -> pb::SubmitStreamResponse {
    let (code, message) = match refused {
        None => (0, String::new()),
        Some(s) => (s.code() as u32, s.message().to_string()),
    };
    pb::SubmitStreamResponse {
        hash: Bytes::copy_from_slice(hash.as_bytes()),
        code,
        message,
    }
}

/// The gRPC status for a refused submission.
pub fn submit_status(e: &SubmitError) -> Status {
    let msg = e.to_string();
    match e {
        SubmitError::Rejected { code, .. } => match code {
            RejectCode::Malformed | RejectCode::BadSignature | RejectCode::TooLarge => {
                Status::invalid_argument(msg)
            }
            RejectCode::UnknownAccount => Status::not_found(msg),
            RejectCode::StaleNonce | RejectCode::FutureNonce | RejectCode::InsufficientFunds => {
                Status::failed_precondition(msg)
            }
        },
        SubmitError::Pool(p) => match p {
            MempoolError::Full { .. } => Status::resource_exhausted(msg),
            MempoolError::Duplicate | MempoolError::AlreadyCommitted => Status::already_exists(msg),
            MempoolError::NonceTaken { .. } | MempoolError::FutureNonce { .. } => {
                Status::failed_precondition(msg)
            }
        },
        SubmitError::Busy { .. } => Status::resource_exhausted(msg),
        SubmitError::Internal(_) => Status::internal(msg),
    }
}

fn hash_arg(field: &'static str, b: &[u8]) -> Result<Hash, Status> {
    Hash::from_slice(b).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

/// A stored block with its commit and results.
pub fn stored_with_results(
    store: &dyn Store,
    h: Height,
) -> Result<Option<(Block, crate::types::Commit, Vec<TxResult>)>, Status> {
    let Some(s) = store.stored(h).map_err(storage_status)? else {
        return Ok(None);
    };
    let (results, _) = decode_outcome(&s.app_delta)
        .map_err(|e| Status::internal(format!("stored outcome of block {h}: {e}")))?;
    Ok(Some((s.block, s.commit, results)))
}

/// The header of `h` with its commit, for proofs.
pub fn signed_header(store: &dyn Store, h: Height) -> Result<pb::SignedHeader, Status> {
    let block = store
        .block(h)
        .map_err(storage_status)?
        .ok_or_else(|| Status::unavailable(format!("block {h} is not stored")))?;
    let commit = store
        .commit(h)
        .map_err(storage_status)?
        .ok_or_else(|| Status::unavailable(format!("commit {h} is not stored")))?;
    Ok(pb::SignedHeader {
        header: Some(block.header.to_proto()),
        commit: Some(commit.to_proto()),
    })
}

#[tonic::async_trait]
impl TxService for TxApi {
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let i = self.inner.get()?;
        self.streams
            .submit_bytes(super::auth::caller(&req), req.get_ref().tx.len())?;
        let req = req.into_inner();
        // An unknown mode is refused rather than read as ACCEPTED: a client that
        // asked for something stronger must not take an early answer for it.
        let wait = match pb::SubmitMode::try_from(req.mode) {
            Ok(pb::SubmitMode::Accepted | pb::SubmitMode::Unspecified) => false,
            Ok(pb::SubmitMode::Committed) => true,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "mode: unknown submit mode {}",
                    req.mode
                )));
            }
        };
        let hash = Hash::digest(&req.tx);
        let waiter = wait.then(|| i.pool.notifier().wait_for(hash));
        match i.pool.admit(req.tx.clone()).await {
            Ok(_) => {}
            // A retry of a transaction still waiting in the pool (the client
            // lost the first answer): waiting for its commit is what it asked.
            Err(SubmitError::Pool(MempoolError::Duplicate)) if waiter.is_some() => {}
            Err(e) => {
                if let Some(w) = waiter {
                    i.pool.notifier().forget(w);
                }
                return Err(submit_status(&e));
            }
        }
        let mut resp = pb::SubmitResponse {
            hash: Bytes::copy_from_slice(hash.as_bytes()),
            ..Default::default()
        };
        if let Some(w) = waiter {
            match tokio::time::timeout(COMMIT_WAIT, w.outcome).await {
                Ok(Ok(TxOutcome::Committed {
                    height,
                    index,
                    result,
                })) => {
                    resp.height = height.0;
                    resp.index = index;
                    resp.result = Some(result.to_proto());
                }
                Ok(Ok(TxOutcome::Evicted { reason })) => {
                    return Err(Status::aborted(format!(
                        "transaction left the mempool uncommitted: {reason}"
                    )));
                }
                Ok(Err(_)) => return Err(Status::unavailable("node is shutting down")),
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "not committed within {}s; it is still in the mempool",
                        COMMIT_WAIT.as_secs()
                    )));
                }
            }
        }
        Ok(Response::new(resp))
    }

    type SubmitStreamStream = Slotted<ReceiverStream<Result<pb::SubmitStreamResponse, Status>>>;

    async fn submit_stream(
        &self,
        req: Request<tonic::Streaming<pb::SubmitStreamRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let pool = self.inner.get()?.pool.clone();
        let slot = self
            .streams
            .acquire(req.remote_addr(), super::auth::caller(&req))?;
        let caller = super::auth::caller(&req).cloned();
        let streams = self.streams.clone();
        let mut input = req.into_inner();
        let (queued_tx, mut queued_rx) = mpsc::channel::<Queued>(SUBMIT_WINDOW);
        let (out_tx, out_rx) = mpsc::channel(STREAM_BUFFER);
        // The reader queues each transaction for admission as it arrives. Once
        // SUBMIT_WINDOW answers wait, it stops reading, and HTTP/2 flow control
        // stops the client: a stream holds a bounded amount, however fast it sends.
        tokio::spawn(async move {
            loop {
                let msg = match input.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = queued_tx.send(Queued::Failed(status)).await;
                        break;
                    }
                };
                let hash = Hash::digest(&msg.tx);
                let q = match streams.submit_bytes(caller.as_ref(), msg.tx.len()) {
                    Err(status) => Queued::Refused(hash, status),
                    Ok(()) => match pool.enqueue(msg.tx) {
                        Ok(answer) => Queued::Waiting(hash, answer),
                        Err(e) => Queued::Refused(hash, submit_status(&e)),
                    },
                };
                if queued_tx.send(q).await.is_err() {
                    break;
                }
            }
        });
        // The answerer sends the answers in request order (admission keeps it).
        tokio::spawn(async move {
            while let Some(q) = queued_rx.recv().await {
                let answer = match q {
                    Queued::Waiting(hash, answer) => match answer.await {
                        Ok(Ok(_)) => stream_answer(hash, None),
                        Ok(Err(e)) => stream_answer(hash, Some(submit_status(&e))),
                        Err(_) => stream_answer(
                            hash,
                            Some(Status::internal("the admission worker stopped")),
                        ),
                    },
                    Queued::Refused(hash, status) => stream_answer(hash, Some(status)),
                    Queued::Failed(status) => {
                        let _ = out_tx.send(Err(status)).await;
                        return;
                    }
                };
                if out_tx.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Slotted::new(
            ReceiverStream::new(out_rx),
            slot,
        )))
    }

    async fn get_tx(
        &self,
        req: Request<pb::GetTxRequest>,
    ) -> Result<Response<pb::GetTxResponse>, Status> {
        let i = self.inner.get()?;
        let store = i.store.clone();
        // A block appended in block sync is readable before its fsync; it is
        // reported only once durable (the notifier's height follows the fsync).
        let durable = *i.pool.notifier().heights().borrow();
        let hash = hash_arg("hash", &req.into_inner().hash)?;
        blocking(move || tx_with_proof(store.as_ref(), &hash, durable))
            .await
            .map(Response::new)
    }

    type StreamBlocksStream = ReadAhead<pb::StreamBlocksResponse>;

    async fn stream_blocks(
        &self,
        req: Request<pb::StreamBlocksRequest>,
    ) -> Result<Response<Self::StreamBlocksStream>, Status> {
        let i = self.inner.get()?;
        let slot = self
            .streams
            .acquire(req.remote_addr(), super::auth::caller(&req))?;
        let from = req.into_inner().from_height;
        let start = start_height(i.store.as_ref(), from)?;
        let store = i.store.clone();
        let mut heights = i.pool.notifier().heights();
        let (ahead, stream) = read_ahead(slot);
        tokio::spawn(async move {
            let mut next = start;
            loop {
                let latest = *heights.borrow_and_update();
                while next <= latest {
                    let s = store.clone();
                    let from = next;
                    let batch = blocking(move || Ok(read_blocks(s.as_ref(), from, latest)))
                        .await
                        .unwrap_or_else(|e| vec![(Err(e), 0)]);
                    for (item, size) in batch {
                        let stop = item.is_err();
                        if !ahead.send(item, size).await || stop {
                            return;
                        }
                        next = next.next();
                    }
                }
                tokio::select! {
                    r = heights.changed() => if r.is_err() { return },
                    _ = ahead.closed() => return,
                }
            }
        });
        Ok(Response::new(stream))
    }

    type StreamTxResultsStream = ReadAhead<pb::TxResultEvent>;

    async fn stream_tx_results(
        &self,
        req: Request<pb::StreamTxResultsRequest>,
    ) -> Result<Response<Self::StreamTxResultsStream>, Status> {
        let slot = self
            .streams
            .acquire(req.remote_addr(), super::auth::caller(&req))?;
        let req = req.into_inner();
        let filter = if req.sender.is_empty() {
            None
        } else {
            Some(
                crate::types::PublicKey::from_bytes(&req.sender)
                    .map_err(|e| Status::invalid_argument(format!("sender: {e}")))?,
            )
        };
        let i = self.inner.get()?;
        let start = start_height(i.store.as_ref(), req.from_height)?;
        let store = i.store.clone();
        let mut heights = i.pool.notifier().heights();
        let (ahead, stream) = read_ahead(slot);
        tokio::spawn(async move {
            let mut next = start;
            loop {
                let latest = *heights.borrow_and_update();
                while next <= latest {
                    let s = store.clone();
                    let from = next;
                    let batch =
                        blocking(move || Ok(read_results(s.as_ref(), from, latest, filter)))
                            .await
                            .unwrap_or_else(|e| vec![Err(e)]);
                    for block in batch {
                        let events = match block {
                            Ok(events) => events,
                            Err(e) => {
                                ahead.send(Err(e), 0).await;
                                return;
                            }
                        };
                        for (ev, size) in events {
                            if !ahead.send(Ok(ev), size).await {
                                return;
                            }
                        }
                        next = next.next();
                    }
                }
                tokio::select! {
                    r = heights.changed() => if r.is_err() { return },
                    _ = ahead.closed() => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A committed transaction with its inclusion proof and signed header (reads
/// storage).
fn tx_with_proof(
    store: &dyn Store,
    hash: &Hash,
    durable: Height,
) -> Result<pb::GetTxResponse, Status> {
    let not_committed = || Status::not_found(format!("transaction {hash} is not committed"));
    let (h, index) = store
        .locate_tx(hash)
        .map_err(storage_status)?
        .ok_or_else(not_committed)?;
    if h > durable {
        return Err(not_committed());
    }
    let (block, _, results) = stored_with_results(store, h)?
        .ok_or_else(|| Status::unavailable(format!("block {h} is pruned on this node")))?;
    let pos = index as usize;
    let tx = block
        .txs
        .get(pos)
        .cloned()
        .ok_or_else(|| Status::internal("transaction index out of range"))?;
    let leaves: Vec<Hash> = block.txs.iter().map(|t| merkle::leaf_hash(t)).collect();
    let proof = merkle::MerkleProof::build(&leaves, pos)
        .ok_or_else(|| Status::internal("cannot build the inclusion proof"))?;
    Ok(pb::GetTxResponse {
        tx,
        height: h.0,
        index,
        result: results.get(pos).map(Wire::to_proto),
        proof: Some(pb::MerkleProof {
            index: proof.index,
            total: proof.total,
            siblings: proof
                .siblings
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect(),
        }),
        header: Some(signed_header(store, h)?),
    })
}

/// Stored blocks from `from` up to `to` with their commits and results, at
/// most [`READ_BATCH`] of them or [`READ_BATCH_BYTES`]; each with its encoded
/// size. An error ends the batch (and the stream).
fn read_blocks(
    store: &dyn Store,
    from: Height,
    to: Height,
) -> Vec<(Result<pb::StreamBlocksResponse, Status>, usize)> {
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut h = from;
    while h <= to && (out.len() as u64) < READ_BATCH && bytes < READ_BATCH_BYTES {
        let item = match stored_with_results(store, h) {
            Ok(Some((block, commit, results))) => Ok(pb::StreamBlocksResponse {
                block: Some(block.to_proto()),
                commit: Some(commit.to_proto()),
                results: results.iter().map(Wire::to_proto).collect(),
            }),
            Ok(None) => Err(Status::unavailable(format!("block {h} is pruned"))),
            Err(e) => Err(e),
        };
        let size = item.as_ref().map_or(0, prost::Message::encoded_len);
        let stop = item.is_err();
        bytes += size;
        out.push((item, size));
        if stop {
            break;
        }
        h = h.next();
    }
    out
}

/// The transaction results of stored blocks from `from` up to `to` (of
/// `sender` only, if given), block by block, within the same bounds as
/// [`read_blocks`]. An error ends the batch (and the stream).
#[allow(clippy::type_complexity)]
fn read_results(
    store: &dyn Store,
    from: Height,
    to: Height,
    sender: Option<crate::types::PublicKey>,
) -> Vec<Result<Vec<(pb::TxResultEvent, usize)>, Status>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut h = from;
    while h <= to && (out.len() as u64) < READ_BATCH && bytes < READ_BATCH_BYTES {
        let (block, _, results) = match stored_with_results(store, h) {
            Ok(Some(x)) => x,
            Ok(None) => {
                out.push(Err(Status::unavailable(format!("block {h} is pruned"))));
                break;
            }
            Err(e) => {
                out.push(Err(e));
                break;
            }
        };
        let mut events = Vec::new();
        for (i, (t, r)) in block.txs.iter().zip(&results).enumerate() {
            let from = decode_tx(t).ok().map(|x| x.sender);
            if sender.is_some() && from != sender {
                continue;
            }
            let ev = pb::TxResultEvent {
                hash: Bytes::copy_from_slice(Hash::digest(t).as_bytes()),
                height: h.0,
                index: i as u32,
                sender: from
                    .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                    .unwrap_or_default(),
                result: Some(r.to_proto()),
            };
            let size = prost::Message::encoded_len(&ev);
            events.push((ev, size));
        }
        // What was read counts, whether or not its results are sent.
        bytes += block.txs.iter().map(|t| t.len()).sum::<usize>();
        out.push(Ok(events));
        h = h.next();
    }
    out
}

/// Where a stream starts: `from` (checked against what is stored), or the next
/// block when 0.
fn start_height(store: &dyn Store, from: u64) -> Result<Height, Status> {
    let latest = store.latest_height();
    if from == 0 {
        return Ok(latest.next());
    }
    if from > latest.0 {
        return Ok(Height(from));
    }
    resolve_height(store, from)
}
