//! The open-loop load: pre-signed transactions offered at a fixed rate (or as
//! fast as the in-flight window allows) over several gRPC connections per node.

use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::pool::PreSigned;
use crate::pb;
use crate::pb::tx_service_client::TxServiceClient;

/// Most submissions waiting for an answer on one connection. At a fixed rate a
/// full window means the client cannot offer more: the shortfall shows as an
/// offered rate below the one asked for.
pub const INFLIGHT_PER_CONN: usize = 512;

/// How to offer the load.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Transactions per second, or `None` for as fast as possible.
    pub rate: Option<f64>,
    /// Length of the timed window.
    pub duration: Duration,
    /// Offer a refused transaction again while the refusal can pass (a full
    /// mempool, a busy node, a nonce ahead of one still being retried), so
    /// that every transaction of the pool lands; otherwise a refusal is
    /// counted and the transaction dropped.
    pub retry: bool,
    /// One `Submit` call per transaction instead of a `SubmitStream` per
    /// connection.
    pub unary: bool,
}

/// How long a refused transaction is offered again before it counts as refused.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// True if a refusal with this code can pass when offered again later.
fn retryable(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::ResourceExhausted
            | tonic::Code::Unavailable
            // A nonce ahead of the sender's next one: the earlier nonce is
            // itself being offered again.
            | tonic::Code::FailedPrecondition
    )
}

/// When a refused transaction is offered again (in retry mode).
struct Backoff {
    first: Instant,
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            first: Instant::now(),
            next: Duration::from_millis(10),
        }
    }

    /// How long to wait before offering again after a refusal with `code`, or
    /// `None` if the refusal stands: no retry mode, a refusal that cannot pass
    /// later, or [`RETRY_FOR`] spent. Waits double up to half a second.
    fn after(&mut self, retry: bool, code: tonic::Code) -> Option<Duration> {
        if !(retry && retryable(code) && self.first.elapsed() < RETRY_FOR) {
            return None;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(Duration::from_millis(500));
        Some(wait)
    }
}

/// Shared counters of one run, read by the progress line and the report.
pub struct LoadState {
    /// When the timed window started.
    pub t0: Instant,
    /// Per pool index: nanoseconds after `t0` when it was sent, plus one (0 = not
    /// sent).
    pub sent_at: Vec<AtomicU64>,
    /// Submissions sent.
    pub sent: AtomicU64,
    /// Submissions the node accepted.
    pub accepted: AtomicU64,
    /// Refusals by gRPC code, with the first message of each.
    pub refused: Mutex<BTreeMap<String, (u64, String)>>,
}

impl LoadState {
    /// Counters for a pool of `n` transactions, starting the clock now.
    pub fn new(n: usize) -> LoadState {
        LoadState {
            t0: Instant::now(),
            sent_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: Mutex::new(BTreeMap::new()),
        }
    }

    /// When transaction `i` was sent, in ms after `t0`.
    pub fn sent_ms(&self, i: usize) -> Option<f64> {
        match self.sent_at.get(i)?.load(Ordering::Relaxed) {
            0 => None,
            ns => Some((ns - 1) as f64 / 1e6),
        }
    }

    /// Refusals in total.
    pub fn refused_total(&self) -> u64 {
        self.refused.lock().values().map(|(n, _)| n).sum()
    }

    fn refuse(&self, status: &tonic::Status) {
        let mut m = self.refused.lock();
        let e = m
            .entry(format!("{:?}", status.code()))
            .or_insert_with(|| (0, status.message().to_string()));
        e.0 += 1;
    }
}

/// One node's connections.
pub struct NodeConns {
    conns: Vec<(TxServiceClient<Channel>, Arc<Semaphore>)>,
}

impl NodeConns {
    /// Wraps connected channels to one node.
    pub fn new(channels: Vec<Channel>) -> NodeConns {
        NodeConns {
            conns: channels
                .into_iter()
                .map(|c| {
                    (
                        TxServiceClient::new(c),
                        Arc::new(Semaphore::new(INFLIGHT_PER_CONN)),
                    )
                })
                .collect(),
        }
    }
}

/// A submission sent on a stream and not answered yet.
struct Pending {
    tx: Bytes,
    // Held until answered: bounds what waits on the connection.
    _permit: OwnedSemaphorePermit,
    backoff: Backoff,
}

/// One connection's `SubmitStream`: answers come in request order, so the
/// submissions waiting for one are a queue.
struct Submitter {
    requests: mpsc::UnboundedSender<pb::SubmitStreamRequest>,
    pending: Mutex<VecDeque<Pending>>,
}

impl Submitter {
    /// Opens the stream and starts the task that reads its answers.
    async fn open(
        mut client: TxServiceClient<Channel>,
        state: Arc<LoadState>,
        retry: bool,
    ) -> Result<Arc<Submitter>, tonic::Status> {
        let (requests, rx) = mpsc::unbounded_channel();
        let answers = client
            .submit_stream(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        let me = Arc::new(Submitter {
            requests,
            pending: Mutex::new(VecDeque::new()),
        });
        tokio::spawn(me.clone().read_answers(answers, state, retry));
        Ok(me)
    }

    /// Sends one submission; `p.permit` is held until it is answered.
    fn send(&self, p: Pending, state: &LoadState) {
        let mut q = self.pending.lock();
        // Queued and sent under one lock, so the queue keeps the sending order.
        if self
            .requests
            .send(pb::SubmitStreamRequest { tx: p.tx.clone() })
            .is_ok()
        {
            q.push_back(p);
        } else {
            state.refuse(&tonic::Status::unavailable("the submit stream has ended"));
        }
    }

    async fn read_answers(
        self: Arc<Self>,
        mut answers: tonic::Streaming<pb::SubmitStreamResponse>,
        state: Arc<LoadState>,
        retry: bool,
    ) {
        let end = loop {
            let a = match answers.message().await {
                Ok(Some(a)) => a,
                Ok(None) => break tonic::Status::unavailable("the submit stream ended"),
                Err(s) => break s,
            };
            let Some(mut p) = self.pending.lock().pop_front() else {
                break tonic::Status::internal("an answer to no submission");
            };
            if a.code == 0 {
                state.accepted.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let status = tonic::Status::new(tonic::Code::from(a.code as i32), a.message);
            match p.backoff.after(retry, status.code()) {
                // The permit stays held: a node that refuses slows the
                // offering down.
                Some(wait) => {
                    let me = self.clone();
                    let st = state.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        me.send(p, &st);
                    });
                }
                None => state.refuse(&status),
            }
        };
        // What waits now is never answered.
        let mut q = self.pending.lock();
        for _ in q.drain(..) {
            state.refuse(&end);
        }
    }
}

/// Offers the pool over `nodes` for `spec.duration`, starting at `state.t0`.
/// Returns when the window ends or the pool is used up; answers still arriving
/// are counted by the tasks that wait for them.
pub async fn offer(
    pool: Arc<PreSigned>,
    nodes: Arc<Vec<NodeConns>>,
    spec: &LoadSpec,
    state: Arc<LoadState>,
) -> usize {
    let n = nodes.len().max(1);
    let total = pool.txs.len();
    let mut next = 0usize;
    let tick = Duration::from_millis(1);
    // One submit stream per connection, unless each submission is its own call.
    let mut streams: Vec<Vec<Arc<Submitter>>> = Vec::new();
    if !spec.unary {
        for node in nodes.iter() {
            let mut per_node = Vec::new();
            for (client, _) in &node.conns {
                match Submitter::open(client.clone(), state.clone(), spec.retry).await {
                    Ok(s) => per_node.push(s),
                    Err(e) => {
                        state.refuse(&e);
                        return 0;
                    }
                }
            }
            streams.push(per_node);
        }
    }
    loop {
        let elapsed = state.t0.elapsed();
        if elapsed >= spec.duration || next >= total {
            break;
        }
        let due = match spec.rate {
            Some(r) => ((r * elapsed.as_secs_f64()) as usize).min(total),
            None => total,
        };
        while next < due {
            let account = pool.account_of(next);
            let node = &nodes[account % n];
            let c = (account / n) % node.conns.len();
            let (client, sem) = &node.conns[c];
            let permit = if spec.rate.is_some() {
                match sem.clone().try_acquire_owned() {
                    Ok(p) => p,
                    // The window is full: offer the rest when answers free it.
                    Err(_) => break,
                }
            } else {
                match tokio::time::timeout(
                    spec.duration.saturating_sub(state.t0.elapsed()),
                    sem.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    _ => break,
                }
            };
            let i = next;
            next += 1;
            let tx = pool.txs[i].clone();
            let st = state.clone();
            st.sent_at[i].store(st.t0.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
            st.sent.fetch_add(1, Ordering::Relaxed);
            if let Some(stream) = streams.get(account % n).map(|s| &s[c]) {
                let p = Pending {
                    tx,
                    _permit: permit,
                    backoff: Backoff::new(),
                };
                stream.send(p, &st);
            } else {
                let mut client = client.clone();
                let retry = spec.retry;
                tokio::spawn(async move {
                    let mut backoff = Backoff::new();
                    let r = loop {
                        let r = client
                            .submit(pb::SubmitRequest {
                                tx: tx.clone(),
                                mode: pb::SubmitMode::Accepted as i32,
                            })
                            .await;
                        match &r {
                            Err(s) => match backoff.after(retry, s.code()) {
                                // The permit stays held: a node that refuses
                                // slows the offering down.
                                Some(wait) => tokio::time::sleep(wait).await,
                                None => break r,
                            },
                            Ok(_) => break r,
                        }
                    };
                    drop(permit);
                    match r {
                        Ok(_) => {
                            st.accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(s) => st.refuse(&s),
                    }
                });
            }
            if spec.rate.is_none() && state.t0.elapsed() >= spec.duration {
                break;
            }
        }
        if spec.rate.is_some() || next < due {
            tokio::time::sleep(tick).await;
        }
    }
    next
}
