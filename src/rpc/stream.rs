//! Storage work of the handlers, off the async workers, and response streams
//! that read ahead of their client by a bounded amount.
//!
//! A handler never reads sled on an async worker: a snapshot chunk is MiBs
//! and a block range thousands of reads, and while one runs the worker serves
//! nothing else. [`blocking`] runs the read on the blocking pool of the
//! runtime serving the request (the gRPC server's own, see `rpc::spawn`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::Status;

use super::limits::AddressSlot;

/// Bytes of items a stream holds read but not yet taken by its client, at
/// most (plus the item being read): a slow client of a range of 4 MiB blocks
/// holds a few blocks, not the range.
pub const READ_AHEAD_BYTES: usize = 8 * 1024 * 1024;
/// Items a stream holds read but not yet taken, at most.
pub const READ_AHEAD_ITEMS: usize = 32;

/// Runs `f` (storage reads) on the blocking pool and waits for its answer.
pub async fn blocking<T, F>(f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Status> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "a gRPC storage read failed");
            Err(Status::internal("the read failed"))
        }
    }
}

/// The sending half of a [`ReadAhead`] stream.
pub struct Ahead<T> {
    tx: mpsc::Sender<(Result<T, Status>, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
}

impl<T> Ahead<T> {
    /// Queues `item` of about `bytes` once the read-ahead budget has room for
    /// it; false once the client has gone (the producer should stop).
    pub async fn send(&self, item: Result<T, Status>, bytes: usize) -> bool {
        let n = bytes.clamp(1, READ_AHEAD_BYTES) as u32;
        let permit = tokio::select! {
            p = self.budget.clone().acquire_many_owned(n) => match p {
                Ok(p) => p,
                Err(_) => return false,
            },
            _ = self.tx.closed() => return false,
        };
        self.tx.send((item, permit)).await.is_ok()
    }

    /// Resolves once the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// A response stream whose items were read ahead within a bound of bytes
/// and items; an item's share of the bound comes back when the client's
/// connection takes it. Holds the caller's stream slot until it is dropped.
pub struct ReadAhead<T> {
    rx: mpsc::Receiver<(Result<T, Status>, OwnedSemaphorePermit)>,
    _slot: Option<AddressSlot>,
}

/// A bounded read-ahead stream and its sender.
pub fn read_ahead<T>(slot: Option<AddressSlot>) -> (Ahead<T>, ReadAhead<T>) {
    let (tx, rx) = mpsc::channel(READ_AHEAD_ITEMS);
    (
        Ahead {
            tx,
            budget: Arc::new(Semaphore::new(READ_AHEAD_BYTES)),
        },
        ReadAhead { rx, _slot: slot },
    )
}

impl<T> Stream for ReadAhead<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|(item, _permit)| item))
    }
}

/// A response stream holding the caller's stream slot until it is dropped
/// (the call ended or the client went away).
pub struct Slotted<S> {
    inner: S,
    _slot: Option<AddressSlot>,
}

impl<S> Slotted<S> {
    /// `inner`, holding `slot`.
    pub fn new(inner: S, slot: Option<AddressSlot>) -> Slotted<S> {
        Slotted { inner, _slot: slot }
    }
}

impl<S: Stream + Unpin> Stream for Slotted<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    #[tokio::test]
    async fn reads_ahead_within_the_byte_budget() {
        let (ahead, mut stream) = read_ahead::<usize>(None);
        let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = produced.clone();
        let producer = tokio::spawn(async move {
            // Items of 3 MiB: the budget of 8 MiB holds two.
            for i in 0..10 {
                if !ahead.send(Ok(i), 3 * 1024 * 1024).await {
                    return;
                }
                p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(produced.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Taking one makes room for one more.
        assert_eq!(stream.next().await.unwrap().unwrap(), 0);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(produced.load(std::sync::atomic::Ordering::SeqCst), 3);
        // A client that goes away stops the producer.
        drop(stream);
        tokio::time::timeout(std::time::Duration::from_secs(5), producer)
            .await
            .expect("the producer stops")
            .unwrap();
    }

    #[tokio::test]
    async fn storage_work_runs_off_the_async_worker() {
        let worker = std::thread::current().id();
        let ran_on = blocking(|| Ok(std::thread::current().id())).await.unwrap();
        assert_ne!(ran_on, worker);
        let e = blocking::<(), _>(|| Err(Status::not_found("no such chunk")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    }
}
