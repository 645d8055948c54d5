//! The gRPC API (tonic): protobuf at this edge, domain types inside. Every
//! service also answers the standard `grpc.health.v1` and reflection services.

mod node_service;
mod query_service;
mod sync_service;
mod tx_service;

use std::future::Future;

use tokio::net::TcpListener;

pub use node_service::{NodeApi, resolve_height, storage_status};
pub use query_service::{QueryApi, proof_to_proto};
pub use sync_service::{MAX_RANGE, SyncApi};
pub use tx_service::{COMMIT_WAIT, TxApi, signed_header, submit_status};

use crate::pb;

/// A value a service needs that exists only once the node has synced: until
/// then the service answers UNAVAILABLE.
pub struct Ready<T>(std::sync::Arc<std::sync::OnceLock<T>>);

impl<T> Clone for Ready<T> {
    fn clone(&self) -> Ready<T> {
        Ready(self.0.clone())
    }
}

impl<T> Default for Ready<T> {
    fn default() -> Ready<T> {
        Ready::new()
    }
}

impl<T> Ready<T> {
    /// Not ready.
    pub fn new() -> Ready<T> {
        Ready(std::sync::Arc::new(std::sync::OnceLock::new()))
    }

    /// Ready with `v` (only the first call counts).
    pub fn set(&self, v: T) {
        let _ = self.0.set(v);
    }

    /// The value, or UNAVAILABLE.
    pub fn get(&self) -> Result<&T, tonic::Status> {
        self.0.get().ok_or_else(|| {
            tonic::Status::unavailable("the node is syncing and cannot serve this yet")
        })
    }
}

/// The services a node serves.
pub struct Services {
    /// Status, blocks, commits, validators.
    pub node: NodeApi,
    /// Transactions.
    pub tx: TxApi,
    /// State queries.
    pub query: QueryApi,
    /// Snapshots and blocks for syncing nodes.
    pub sync: SyncApi,
}

/// Client connections served at once; more are closed on accept (and logged).
pub const MAX_CONNECTIONS: usize = 256;
/// Requests one client connection may have in progress at once; more wait.
pub const MAX_CONCURRENT_PER_CONNECTION: usize = 32;
/// HTTP/2 streams one client connection may open at once (streaming
/// subscriptions included).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Largest response (a light block, a stream item, a snapshot chunk).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A client connection holding one of the [`MAX_CONNECTIONS`] slots until it
/// closes.
struct Limited {
    io: tokio::net::TcpStream,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for Limited {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl tokio::io::AsyncRead for Limited {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Limited {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepted connections, at most `max` open at once: a connection beyond is
/// closed at once, so that a client opening connections in a loop cannot make
/// the node hold unboundedly many.
fn limited_incoming(
    listener: TcpListener,
    max: usize,
) -> impl futures::Stream<Item = std::io::Result<Limited>> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max));
    futures::stream::unfold((listener, slots), move |(listener, slots)| async move {
        loop {
            let (io, addr) = match listener.accept().await {
                Ok(c) => c,
                // A failed accept (out of descriptors, a reset connection) is
                // not the end of the server.
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let _ = io.set_nodelay(true);
                    return Some((Ok(Limited { io, _slot: slot }), (listener, slots)));
                }
                Err(_) => {
                    tracing::warn!(client = %addr, max, "too many gRPC connections; closing this one");
                    drop(io);
                }
            }
        }
    })
}

/// Serves the API on `listener` until `shutdown` completes. Every client is
/// bounded: [`MAX_CONNECTIONS`] connections, [`MAX_CONCURRENT_PER_CONNECTION`]
/// requests in progress and [`MAX_STREAMS_PER_CONNECTION`] streams per
/// connection, requests of `max_request_bytes`.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    max_request_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::node_service_server::NodeServiceServer<NodeApi>>()
        .await;
    health
        .set_serving::<pb::tx_service_server::TxServiceServer<TxApi>>()
        .await;
    health
        .set_serving::<pb::query_service_server::QueryServiceServer<QueryApi>>()
        .await;
    health
        .set_serving::<pb::sync_service_server::SyncServiceServer<SyncApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(MAX_CONCURRENT_PER_CONNECTION)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
    let router = builder
        .add_service(health_service)
        .add_service(
            pb::node_service_server::NodeServiceServer::new(services.node)
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            pb::tx_service_server::TxServiceServer::new(services.tx)
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            pb::query_service_server::QueryServiceServer::new(services.query)
                .max_decoding_message_size(max_request_bytes),
        )
        .add_service(
            pb::sync_service_server::SyncServiceServer::new(services.sync)
                .max_decoding_message_size(max_request_bytes)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        );
    let router = match reflection {
        Ok(r) => router.add_service(r),
        Err(e) => {
            tracing::warn!(error = %e, "gRPC reflection unavailable");
            router
        }
    };
    router
        .serve_with_incoming_shutdown(limited_incoming(listener, MAX_CONNECTIONS), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(limited_incoming(listener, 1));
        let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
        let held = incoming.next().await.unwrap().unwrap();
        // The second is accepted and closed while the first holds the slot.
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accept_more = tokio::spawn(async move {
            let next = incoming.next().await;
            (next.map(|r| r.is_ok()), incoming)
        });
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), second.read(&mut buf))
            .await
            .expect("the second connection was not closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // Once the first closes, a new connection is served.
        drop(held);
        let _third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (got, _incoming) = accept_more.await.unwrap();
        assert_eq!(got, Some(true));
    }
}
