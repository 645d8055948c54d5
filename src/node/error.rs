//! Errors that stop the node.

use crate::app::AppError;
use crate::config::ConfigError;
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
    /// The network could not start.
    #[error("network: {0}")]
    Net(String),
    /// The gRPC or metrics server could not start.
    #[error("server: {0}")]
    Server(String),
    /// Stored data contradicts itself (for example the application state does not
    /// match the block log).
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
}
