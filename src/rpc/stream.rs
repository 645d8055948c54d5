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

use super::limits::StreamGuard;

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
/// connection takes it. Holds the caller's stream slots until it is dropped,
/// and ends with UNAUTHENTICATED when the caller's certificate expires.
pub struct ReadAhead<T> {
    rx: mpsc::Receiver<(Result<T, Status>, OwnedSemaphorePermit)>,
    guard: StreamGuard,
}

/// A bounded read-ahead stream and its sender.
pub fn read_ahead<T>(guard: StreamGuard) -> (Ahead<T>, ReadAhead<T>) {
    let (tx, rx) = mpsc::channel(READ_AHEAD_ITEMS);
    (
        Ahead {
            tx,
            budget: Arc::new(Semaphore::new(READ_AHEAD_BYTES)),
        },
        ReadAhead { rx, guard },
    )
}

impl<T> Stream for ReadAhead<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(end) = self.guard.poll_expired(cx) {
            return Poll::Ready(end.map(Err));
        }
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|(item, _permit)| item))
    }
}

/// A response stream holding the caller's stream slots until it is dropped
/// (the call ended or the client went away), and ending with UNAUTHENTICATED
/// when the caller's certificate expires.
pub struct Slotted<S> {
    inner: S,
    guard: StreamGuard,
}

impl<S> Slotted<S> {
    /// `inner`, holding `guard`.
    pub fn new(inner: S, guard: StreamGuard) -> Slotted<S> {
        Slotted { inner, guard }
    }
}

impl<S: Stream<Item = Result<T, Status>> + Unpin, T> Stream for Slotted<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if let Poll::Ready(end) = self.guard.poll_expired(cx) {
            return Poll::Ready(end.map(Err));
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    #[tokio::test]
    async fn reads_ahead_within_the_byte_budget() {
        let (ahead, mut stream) = read_ahead::<usize>(StreamGuard::none());
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

    /// A stream opened with a certificate ends when the certificate expires,
    /// with UNAUTHENTICATED, even if its producer would go on.
    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_when_its_certificate_expires() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let id = crate::pki::Identity {
            org: "org1".into(),
            role: crate::pki::Role::Client,
            name: "app".into(),
            serial: "01".into(),
            not_after: now + 30,
        };
        let slots = super::super::limits::StreamSlots::default();
        let guard = slots.acquire(None, Some(&id)).unwrap();
        let (ahead, mut stream) = read_ahead::<u32>(guard);
        tokio::spawn(async move {
            let mut i = 0;
            while ahead.send(Ok(i), 1).await {
                i += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        let mut items = 0;
        let end = loop {
            match stream.next().await {
                Some(Ok(_)) => items += 1,
                Some(Err(s)) => break s,
                None => panic!("the stream ended without a status"),
            }
        };
        assert_eq!(end.code(), tonic::Code::Unauthenticated, "{end:?}");
        assert!(end.message().contains("expired"), "{end:?}");
        assert!(
            (25..=32).contains(&items),
            "{items} items before the expiry"
        );
        assert!(stream.next().await.is_none(), "the stream goes on after it");
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
