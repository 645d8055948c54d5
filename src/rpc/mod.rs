//! The gRPC API (tonic): protobuf at this edge, domain types inside. Every
//! service also answers the standard `grpc.health.v1` and reflection services.
//!
//! The server runs on a runtime of its own ([`spawn`]), its handlers read
//! storage on that runtime's bounded blocking pool, and each client address
//! is held to its share of connections and streams ([`Limits`]): whatever
//! clients ask, the threads that run consensus do none of it.

pub mod auth;
mod limits;
mod node_service;
mod query_service;
pub mod quota;
mod stream;
mod sync_service;
mod tx_service;

use std::future::Future;

use tokio::net::TcpListener;

pub use limits::{AddressSlot, Limits, PerAddress, StreamSlots, limited_incoming};
pub use node_service::{NodeApi, OperatorInfo, resolve_height, storage_status};
pub use query_service::{QueryApi, proof_to_proto};
pub use stream::{READ_AHEAD_BYTES, READ_AHEAD_ITEMS, blocking};
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

/// Requests one client connection may have in progress at once; more wait.
pub const MAX_CONCURRENT_PER_CONNECTION: usize = 32;
/// HTTP/2 streams one client connection may open at once (streaming
/// subscriptions included).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Largest response (a light block, a stream item, a snapshot chunk).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Async worker threads of the gRPC server's runtime.
pub const WORKER_THREADS: usize = 2;
/// Threads of the gRPC server's runtime that read storage (and admit client
/// transactions) at once; more reads wait their turn. Bounded so that,
/// however many requests are in flight, clients put at most this many
/// reading threads on the CPU beside the node's.
pub const BLOCKING_THREADS: usize = 4;

/// A node more than this many heights behind a peer is not healthy.
pub const HEALTHY_LAG: u64 = 3;

/// Whether a node in `status` should answer health checks SERVING: following
/// the chain by consensus, and no more than [`HEALTHY_LAG`] heights behind
/// the highest peer (a halted network, with no peer ahead, is not behind).
pub fn is_healthy(status: &crate::node::NodeStatus) -> bool {
    status.sync_phase == crate::node::SyncPhase::Consensus
        && status.peer_max_height.0.saturating_sub(status.height.0) <= HEALTHY_LAG
        && (status.height.0 > 0 || status.peer_max_height.0 == 0)
}

/// Keeps `grpc.health.v1` in step with the node: every service, and the
/// server as a whole (""), SERVING or NOT_SERVING as [`is_healthy`] says.
async fn report_health(
    health: tonic_health::server::HealthReporter,
    mut status: tokio::sync::watch::Receiver<crate::node::NodeStatus>,
) {
    use tonic_health::ServingStatus;
    const SERVICES: [&str; 5] = [
        "",
        "consort.v1.NodeService",
        "consort.v1.TxService",
        "consort.v1.QueryService",
        "consort.v1.SyncService",
    ];
    let mut last = None;
    loop {
        let healthy = is_healthy(&status.borrow_and_update());
        if last != Some(healthy) {
            let s = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for name in SERVICES {
                health.set_service_status(name, s).await;
            }
            last = Some(healthy);
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

/// How the API listener is secured.
#[derive(Clone)]
pub enum Security {
    /// No TLS, no caller checks: loopback only, unless `rpc.insecure`.
    Plaintext,
    /// TLS 1.3; every call judged by the policy ([`auth`]).
    Tls {
        /// The server's TLS configuration ([`auth::server_config`]).
        config: std::sync::Arc<rustls::ServerConfig>,
        /// Who may call what.
        policy: std::sync::Arc<auth::AuthPolicy>,
    },
}

/// Longest a client may take to complete its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// TLS handshakes in progress at once; connections beyond wait to start theirs.
pub const MAX_TLS_HANDSHAKES: usize = 64;

/// Serves the API on `listener` until `shutdown` completes, on the runtime it
/// is called on. Every client is bounded by `limits` (connections, over all
/// and per address; streaming calls per address; request size) and by
/// [`MAX_CONCURRENT_PER_CONNECTION`] requests in progress and
/// [`MAX_STREAMS_PER_CONNECTION`] HTTP/2 streams per connection.
pub async fn serve(
    listener: TcpListener,
    mut services: Services,
    limits: Limits,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let mut streams = StreamSlots::new(limits.max_streams_per_address);
    if let Security::Tls { policy, .. } = &security {
        if let Some(q) = policy.quotas() {
            streams = streams.with_quotas(q.clone());
        }
    }
    services.tx = services.tx.with_stream_slots(streams.clone());
    services.sync = services.sync.with_stream_slots(streams);
    let max_request_bytes = limits.max_request_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(health, services.node.status_watch()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let policy = match &security {
        Security::Plaintext => None,
        Security::Tls { policy, .. } => Some(policy.clone()),
    };
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(MAX_CONCURRENT_PER_CONNECTION)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .layer(auth::AuthLayer::new(policy));
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
    // Older tools and Python's reflection client speak only v1alpha.
    let router = match reflection_v1alpha {
        Ok(r) => router.add_service(r),
        Err(e) => {
            tracing::warn!(error = %e, "gRPC reflection v1alpha unavailable");
            router
        }
    };
    let incoming = limited_incoming(listener, limits);
    match security {
        Security::Plaintext => {
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Security::Tls { config, .. } => {
            use futures::StreamExt as _;
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            // Handshakes run side by side (a slow client holds up no one), each
            // bounded in time; a failed one is logged and dropped.
            let secured = incoming
                .map(move |conn| {
                    let acceptor = acceptor.clone();
                    async move {
                        let conn = conn.ok()?;
                        let peer = conn.peer_addr();
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(conn))
                            .await
                        {
                            Ok(Ok(tls)) => Some(Ok::<_, std::io::Error>(tls)),
                            Ok(Err(e)) => {
                                tracing::debug!(client = ?peer, error = %e, "gRPC TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(client = ?peer, "gRPC TLS handshake timed out");
                                None
                            }
                        }
                    }
                })
                .buffer_unordered(MAX_TLS_HANDSHAKES)
                .filter_map(std::future::ready);
            router.serve_with_incoming_shutdown(secured, shutdown).await
        }
    }
}

/// Why the gRPC server stopped other than by its shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Its runtime could not be built.
    #[error("cannot start the gRPC runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The listener could not be moved to its runtime.
    #[error("cannot take over the gRPC listener: {0}")]
    Listener(#[source] std::io::Error),
    /// The server failed.
    #[error("gRPC server: {0}")]
    Transport(#[source] tonic::transport::Error),
    /// Its thread ended without an answer (it panicked).
    #[error("the gRPC server thread ended without an answer")]
    Gone,
}

/// A gRPC server running on a thread and runtime of its own.
pub struct Server {
    done: tokio::sync::oneshot::Receiver<Result<(), ServeError>>,
}

impl Server {
    /// Waits until the server has stopped.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.done.await.unwrap_or(Err(ServeError::Gone))
    }
}

/// Serves the API on `listener`, as [`serve`] does, on a runtime of its own
/// ([`WORKER_THREADS`] async workers, [`BLOCKING_THREADS`] for storage reads)
/// so that no client work (HTTP/2, encoding MiB answers, storage reads,
/// admitting transactions, or a flood of connections) runs on the threads of
/// the runtime that runs consensus, and clients put a bounded number of
/// threads on the CPU beside them. The listener is taken over by that
/// runtime.
pub fn spawn(
    listener: TcpListener,
    services: Services,
    limits: Limits,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Server, ServeError> {
    let listener = listener.into_std().map_err(ServeError::Listener)?;
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("grpc-server".into())
        .spawn(move || {
            // Built here, not on the caller's runtime, where dropping it
            // (were this thread not to start) would not be allowed.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .max_blocking_threads(BLOCKING_THREADS)
                .thread_name("grpc")
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the gRPC runtime");
                    let _ = done_tx.send(Err(ServeError::Runtime(e)));
                    return;
                }
            };
            let r = runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).map_err(ServeError::Listener)?;
                serve(listener, services, limits, security, shutdown)
                    .await
                    .map_err(ServeError::Transport)
            });
            if let Err(e) = &r {
                tracing::error!(error = %e, "the gRPC server stopped");
            }
            // Streams that wait for future blocks end with the runtime; a
            // storage read in progress is not waited for past a second.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            let _ = done_tx.send(r);
        })
        .map_err(ServeError::Runtime)?;
    Ok(Server { done })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{NodeStatus, SyncPhase};
    use crate::types::{Height, Keypair};

    #[test]
    fn health_follows_the_chain() {
        let base = NodeStatus::new(
            "c".into(),
            "n".into(),
            Keypair::from_seed([1; 32]).public(),
            true,
        );
        let at = |h: u64, peers: u64, phase: SyncPhase| {
            let mut s = base.clone();
            s.height = Height(h);
            s.peer_max_height = Height(peers);
            s.sync_phase = phase;
            is_healthy(&s)
        };
        let rows = [
            (
                "in step with its peers",
                at(100, 100, SyncPhase::Consensus),
                true,
            ),
            (
                "a block or three behind",
                at(97, 100, SyncPhase::Consensus),
                true,
            ),
            ("four behind", at(96, 100, SyncPhase::Consensus), false),
            (
                "restoring a snapshot",
                at(0, 100, SyncPhase::StateSync),
                false,
            ),
            ("fetching blocks", at(50, 100, SyncPhase::BlockSync), false),
            (
                "halted, no peer ahead",
                at(100, 90, SyncPhase::Consensus),
                true,
            ),
            (
                "a new chain, no peer yet",
                at(0, 0, SyncPhase::Consensus),
                true,
            ),
            (
                "nothing yet, peers ahead",
                at(0, 2, SyncPhase::Consensus),
                false,
            ),
        ];
        for (name, got, want) in rows {
            assert_eq!(got, want, "{name}");
        }
    }
}
