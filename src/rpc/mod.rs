//! The gRPC API (tonic): protobuf at this edge, domain types inside. Every
//! service also answers the standard `grpc.health.v1` and reflection services.

mod node_service;
mod query_service;
mod sync_service;
mod tx_service;

use std::future::Future;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

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

/// Serves the API on `listener` until `shutdown` completes.
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
    let mut builder = tonic::transport::Server::builder();
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
                .max_encoding_message_size(64 * 1024 * 1024),
        );
    let router = match reflection {
        Ok(r) => router.add_service(r),
        Err(e) => {
            tracing::warn!(error = %e, "gRPC reflection unavailable");
            router
        }
    };
    router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
