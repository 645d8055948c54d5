//! Errors that stop the node.

use crate::app::AppError;
use crate::config::ConfigError;
use crate::net::NetError;
use crate::rpc::ServeError;
use crate::storage::StorageError;

/// A failure the node cannot continue after: it stops cleanly rather than risk
/// signing or storing something wrong.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Configuration, genesis or key file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The signing state could not be made durable or read back: signing stops.
    #[error("signing state: {0}")]
    SigningState(StorageError),
    /// The block store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The application failed on a block the network decided.
    #[error("application: {0}")]
    App(#[from] AppError),
    /// The p2p listen address is not a socket address.
    #[error("network: p2p.listen: {source}")]
    ListenAddress {
        /// Why it does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
    /// The network could not start.
    #[error("network: {0}")]
    Net(#[source] NetError),
    /// The gRPC or metrics server could not listen on its address.
    #[error("server: cannot listen for {what} on {addr}: {source}")]
    Listen {
        /// Which server.
        what: &'static str,
        /// The address it was to listen on.
        addr: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server could not start.
    #[error("server: {0}")]
    Server(#[source] ServeError),
    /// A block more than 2/3 of the validators committed does not apply to
    /// this node's state: this node's state or rules differ from the
    /// network's. Going on would serve and sign on top of a state nobody
    /// certified; blaming the peers that sent the block would cut off honest
    /// nodes.
    #[error(
        "block {height} is certified by more than 2/3 of the validators but does not apply here \
         ({reason}): this node's state differs from the network's; restore its data directory \
         from a trusted copy or start over with state sync"
    )]
    Diverged {
        /// The certified height that does not apply.
        height: crate::types::Height,
        /// What the check found.
        reason: String,
    },
    /// State sync failed.
    #[error(transparent)]
    StateSync(#[from] crate::sync::state_sync::StateSyncError),
    /// Stored data contradicts itself (for example the application state does not
    /// match the block log).
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
}
