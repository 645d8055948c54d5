//! The application: what the ordered transactions mean.
//!
//! The node drives an [`Application`] through a block's life: `check_tx` before a
//! transaction enters the mempool, `execute` when a block is proposed or checked
//! (speculatively, on top of the committed state, changing nothing), `commit` once
//! the block is decided and its delta is durable in the block log, and `replay`
//! of logged deltas after a restart. Each header commits to the state root AFTER
//! executing that block's transactions, so a snapshot or a proof at height h is
//! checked against the header of h itself.

mod hashchain;
pub mod ledger;
pub mod state;

use bytes::Bytes;

use crate::types::{Hash, Height};

pub use hashchain::HashChainApp;

/// What happened to one transaction of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxResult {
    /// 0 for success; otherwise an application-defined code.
    pub code: u32,
    /// Human-readable outcome.
    pub log: String,
    /// Events the transaction emitted, as (kind, attributes).
    pub events: Vec<Event>,
}

/// An event emitted by a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event kind, e.g. "transfer".
    pub kind: String,
    /// Key/value attributes.
    pub attributes: Vec<(String, String)>,
}

/// The outcome of executing a block's transactions on top of the committed state.
#[derive(Clone, Debug)]
pub struct Execution {
    /// Height executed.
    pub height: Height,
    /// State root after the block.
    pub app_hash: Hash,
    /// One result per transaction, in block order.
    pub results: Vec<TxResult>,
    /// The state changes, encoded by the application; written to the block log
    /// with the block, and handed back to `commit` or `replay`.
    pub delta: Vec<u8>,
}

/// Why a transaction or block is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The transaction is not acceptable; `code` maps to a gRPC status.
    #[error("transaction {index} refused: {reason}")]
    InvalidTx {
        /// Position in the block (0 for a single transaction).
        index: usize,
        /// What kind of refusal.
        code: RejectCode,
        /// What is wrong.
        reason: String,
    },
    /// Executing or committing failed for a reason that is not the transaction's.
    #[error("application failure: {0}")]
    Internal(String),
    /// Heights out of order.
    #[error("expected height {expected}, got {got}")]
    WrongHeight {
        /// Next height the application can take.
        expected: Height,
        /// Height given.
        got: Height,
    },
}

/// Classes of transaction refusal, so the API can answer with the right status,
/// and the failure code of a transaction that fails in a certified block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    /// Malformed bytes, wrong chain, bad field.
    Malformed,
    /// The signature does not verify.
    BadSignature,
    /// The nonce was used already.
    StaleNonce,
    /// The nonce is ahead of the account's next nonce.
    FutureNonce,
    /// Not enough funds.
    InsufficientFunds,
    /// The account does not exist.
    UnknownAccount,
    /// Too large.
    TooLarge,
}

impl RejectCode {
    /// The [`TxResult::code`] of a transaction that failed this way in a
    /// committed block. Stable: results are part of the chain's history.
    pub fn result_code(self) -> u32 {
        match self {
            RejectCode::Malformed => 1,
            RejectCode::BadSignature => 2,
            RejectCode::StaleNonce => 3,
            RejectCode::FutureNonce => 4,
            RejectCode::InsufficientFunds => 5,
            RejectCode::UnknownAccount => 6,
            RejectCode::TooLarge => 7,
        }
    }
}

/// What admission learned of a transaction, for the mempool's ordering rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxMeta {
    /// The sender and nonce, for applications with per-account nonces.
    pub sender: Option<(crate::types::PublicKey, u64)>,
    /// The sender's next nonce in the committed state.
    pub committed_nonce: u64,
}

/// A value read from the committed state with its proof.
#[derive(Clone, Debug)]
pub struct QueryResult {
    /// Height of the committed state read.
    pub height: Height,
    /// The value, if present.
    pub value: Option<Vec<u8>>,
    /// Proof of presence or absence under the state root of `height`.
    pub proof: state::StateProof,
}

/// Deterministic state transition of the chain.
///
/// Implementations use interior synchronization: the runtime calls `execute`
/// for proposals while the gRPC service reads state.
pub trait Application: Send + Sync + 'static {
    /// Height and state root of the last committed block (height 0 and the
    /// genesis root before the first block).
    fn committed(&self) -> (Height, Hash);

    /// Checks a transaction for admission against the committed state (format,
    /// signature, account, nonce not already used, funds). The signature is
    /// verified here once; execution trusts what passed.
    fn check_tx(&self, tx: &[u8]) -> Result<TxMeta, AppError>;

    /// Executes `txs` as the block at `height` (committed height + 1) without
    /// changing the committed state. Deterministic: the same transactions on the
    /// same state give the same result on every node. An `Err` means the block is
    /// invalid (a transaction that must never be in a block).
    fn execute(&self, height: Height, txs: &[Bytes]) -> Result<Execution, AppError>;

    /// Executes a block that more than 2/3 of the validators committed. It is
    /// never refused for what its transactions say: one that fails (format,
    /// signature, nonce, funds) gets a failure result and changes nothing,
    /// deterministically, so that every node reaches the same state whichever
    /// path brought it the block. An `Err` means the application itself failed.
    fn execute_certified(&self, height: Height, txs: &[Bytes]) -> Result<Execution, AppError> {
        self.execute(height, txs)
    }

    /// Builds a proposal from candidate transactions in order: like `execute`, but
    /// a transaction that fails is left out instead of failing the block.
    /// Returns the transactions kept and their execution.
    fn prepare(
        &self,
        height: Height,
        candidates: Vec<Bytes>,
    ) -> Result<(Vec<Bytes>, Execution), AppError> {
        let exec = self.execute(height, &candidates)?;
        Ok((candidates, exec))
    }

    /// Verifies, in one batch, the signatures of transactions about to be checked
    /// one by one, so that each `check_tx` finds them verified.
    fn preverify(&self, _txs: &[Bytes]) {}

    /// Begins a consistent view of the committed state for a snapshot: its
    /// height, state root and bucket table. `None` if the application takes no
    /// snapshots or one is already being taken.
    fn begin_snapshot(&self) -> Option<(Height, Hash, Vec<state::smt::TopNode>)> {
        None
    }

    /// Up to `limit` entries from key hash `from` on, as of the snapshot begun
    /// at `height`, and whether more may follow.
    fn snapshot_page(
        &self,
        height: Height,
        from: &Hash,
        limit: usize,
    ) -> Result<(Vec<(Hash, state::Entry)>, bool), AppError> {
        let _ = (from, limit);
        Err(AppError::Internal(format!(
            "no snapshot of height {height} in progress"
        )))
    }

    /// Ends the snapshot begun at `height`.
    fn end_snapshot(&self, _height: Height) {}

    /// Makes the committed state durable up to now, so that a restart replays
    /// only later blocks. Called from a background thread every so often.
    fn checkpoint(&self) -> Result<(), AppError> {
        Ok(())
    }

    /// Reads `key` from the committed state with a proof.
    fn query(&self, key: &[u8]) -> Result<QueryResult, AppError>;

    /// Makes `exec` the committed state. The runtime has made the block and
    /// `exec.delta` durable in the block log before calling this.
    fn commit(&self, exec: &Execution) -> Result<(), AppError>;

    /// Re-applies a delta read back from the block log after a restart; returns
    /// the state root it leads to.
    fn replay(&self, height: Height, delta: &[u8]) -> Result<Hash, AppError>;
}
