//! The built-in application: a ledger of accounts keyed by ed25519 client keys,
//! with balances from genesis, nonces against replay, transfers, and a key/value
//! record store scoped per account.
//!
//! Execution is deterministic: transactions apply in block order against the
//! committed state plus the block's own earlier changes, and the state root is
//! the sparse Merkle root over all entries ([`crate::app::state`]). Signatures are
//! checked once: at admission (`check_tx`), or in one batch at execution for
//! transactions this node has not seen before.

mod exec;
mod keys;
mod tx;
mod verified;

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

pub use keys::{Account, account_key, record_key};
pub use tx::{Action, MAX_NAME_BYTES, MAX_TX_BYTES, MAX_VALUE_BYTES, TX_TAG, Tx, TxFormatError};
pub use verified::VerifiedCache;

use super::state::{CommittedState, Entry, PreparedChanges, StateBackend, delta};
use super::{AppError, Application, Execution, QueryResult, RejectCode, TxMeta};
use crate::codec::decode_tx;
use crate::config::GenesisAccount;
use crate::types::{Hash, Height, PublicKey};

/// The ledger application.
pub struct Ledger {
    chain_id: String,
    state: CommittedState,
    verified: VerifiedCache,
    /// Executions waiting to be committed, by state root.
    pending: Mutex<HashMap<Hash, PreparedChanges>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ledger({})", self.chain_id)
    }
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(e.to_string())
}

impl Ledger {
    /// Opens the ledger over `backend`. An empty backend is initialized with the
    /// genesis accounts (as height 0).
    pub fn open(
        chain_id: &str,
        backend: Arc<dyn StateBackend>,
        genesis: &[GenesisAccount],
    ) -> Result<Ledger, AppError> {
        let state = CommittedState::open(backend).map_err(internal)?;
        Ledger::with_state(chain_id, state, genesis)
    }

    /// The ledger over a state already opened (by state sync, which checked
    /// its root). An empty state is initialized with the genesis accounts.
    pub fn with_state(
        chain_id: &str,
        state: CommittedState,
        genesis: &[GenesisAccount],
    ) -> Result<Ledger, AppError> {
        let ledger = Ledger {
            chain_id: chain_id.to_string(),
            state,
            verified: VerifiedCache::new(1 << 18),
            pending: Mutex::new(HashMap::new()),
        };
        if ledger.state.committed().0 == Height(0) && ledger.state.is_empty() {
            let changes: BTreeMap<Hash, Option<Entry>> = genesis
                .iter()
                .map(|a| {
                    let e = Entry {
                        key: account_key(&a.public_key),
                        value: Account {
                            balance: a.balance,
                            nonce: 0,
                        }
                        .encode(),
                    };
                    (e.kh(), Some(e))
                })
                .collect();
            let p = ledger.state.prepare(changes).map_err(internal)?;
            ledger.state.apply(Height(0), &p).map_err(internal)?;
        }
        Ok(ledger)
    }

    /// The chain id transactions must be signed for.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// An account in the committed state.
    pub fn account(&self, owner: &PublicKey) -> Result<Option<Account>, AppError> {
        let key = account_key(owner);
        match self.state.get(&Hash::digest(&key)).map_err(internal)? {
            Some(e) => Account::decode(&e.value)
                .map(Some)
                .ok_or_else(|| internal("corrupt account entry")),
            None => Ok(None),
        }
    }

    /// The committed state (for snapshots).
    pub fn state(&self) -> &CommittedState {
        &self.state
    }

    fn take_pending(&self, root: &Hash) -> Option<PreparedChanges> {
        self.pending.lock().remove(root)
    }

    fn remember(&self, p: PreparedChanges) {
        let mut g = self.pending.lock();
        // A few rounds' worth; older ones are recomputed from the delta if needed.
        if g.len() >= 64 {
            g.clear();
        }
        g.insert(p.root, p);
    }
}

impl Application for Ledger {
    fn committed(&self) -> (Height, Hash) {
        self.state.committed()
    }

    fn check_tx(&self, bytes: &[u8]) -> Result<TxMeta, AppError> {
        let reject = |code, reason: String| AppError::InvalidTx {
            index: 0,
            code,
            reason,
        };
        let tx = decode_tx(bytes).map_err(|e| match e {
            TxFormatError::TooLarge { .. } => reject(RejectCode::TooLarge, e.to_string()),
            _ => reject(RejectCode::Malformed, e.to_string()),
        })?;
        let hash = Tx::hash_of(bytes);
        if !self.verified.contains(&hash) {
            tx.verify(&self.chain_id)
                .map_err(|e| reject(RejectCode::BadSignature, e.to_string()))?;
            self.verified.insert(hash);
        }
        let acc = self.account(&tx.sender)?.ok_or_else(|| {
            reject(
                RejectCode::UnknownAccount,
                format!("account {} does not exist", tx.sender),
            )
        })?;
        if tx.nonce < acc.nonce {
            return Err(reject(
                RejectCode::StaleNonce,
                format!(
                    "nonce {} already used; the account's next nonce is {}",
                    tx.nonce, acc.nonce
                ),
            ));
        }
        if let Action::Transfer { amount, .. } = &tx.action {
            if *amount > acc.balance {
                return Err(reject(
                    RejectCode::InsufficientFunds,
                    format!("transfer of {amount} exceeds the balance {}", acc.balance),
                ));
            }
        }
        Ok(TxMeta {
            sender: Some((tx.sender, tx.nonce)),
            committed_nonce: acc.nonce,
        })
    }

    fn preverify(&self, txs: &[Bytes]) {
        exec::preverify(self, txs);
    }

    fn execute(&self, height: Height, txs: &[Bytes]) -> Result<Execution, AppError> {
        let run = exec::run(self, height, txs.to_vec(), exec::Mode::Strict)?;
        Ok(self.finish(height, run))
    }

    fn execute_certified(&self, height: Height, txs: &[Bytes]) -> Result<Execution, AppError> {
        let run = exec::run(self, height, txs.to_vec(), exec::Mode::Certified)?;
        Ok(self.finish(height, run))
    }

    fn prepare(
        &self,
        height: Height,
        candidates: Vec<Bytes>,
    ) -> Result<(Vec<Bytes>, Execution), AppError> {
        let run = exec::run(self, height, candidates, exec::Mode::Lenient)?;
        let kept = run.kept.clone();
        Ok((kept, self.finish(height, run)))
    }

    fn begin_snapshot(&self) -> Option<(Height, Hash, Vec<crate::app::state::smt::TopNode>)> {
        self.state.begin_snapshot()
    }

    fn snapshot_page(
        &self,
        height: Height,
        from: &Hash,
        limit: usize,
    ) -> Result<(Vec<(Hash, Entry)>, bool), AppError> {
        self.state
            .snapshot_page(height, from, limit)
            .map_err(internal)
    }

    fn end_snapshot(&self, height: Height) {
        self.state.end_snapshot(height)
    }

    fn checkpoint(&self) -> Result<(), AppError> {
        self.state.backend().flush().map_err(internal)
    }

    fn query(&self, key: &[u8]) -> Result<QueryResult, AppError> {
        let (entry, proof, height) = self.state.prove(&Hash::digest(key)).map_err(internal)?;
        Ok(QueryResult {
            height,
            value: entry.map(|e| e.value),
            proof,
        })
    }

    fn commit(&self, exec: &Execution) -> Result<(), AppError> {
        let (h, _) = self.state.committed();
        if exec.height != h.next() {
            return Err(AppError::WrongHeight {
                expected: h.next(),
                got: exec.height,
            });
        }
        let prepared = match self.take_pending(&exec.app_hash) {
            Some(p) => p,
            None => {
                let changes = delta::decode(&exec.delta).map_err(internal)?;
                self.state
                    .prepare(changes.into_iter().collect())
                    .map_err(internal)?
            }
        };
        let root = self.state.apply(exec.height, &prepared).map_err(internal)?;
        if root != exec.app_hash {
            return Err(internal(format!(
                "state root {root} after commit differs from the executed {}",
                exec.app_hash
            )));
        }
        Ok(())
    }

    fn replay(&self, height: Height, delta_bytes: &[u8]) -> Result<Hash, AppError> {
        let (h, _) = self.state.committed();
        if height != h.next() {
            return Err(AppError::WrongHeight {
                expected: h.next(),
                got: height,
            });
        }
        let changes = delta::decode(delta_bytes).map_err(internal)?;
        let p = self
            .state
            .prepare(changes.into_iter().collect())
            .map_err(internal)?;
        self.state.apply(height, &p).map_err(internal)
    }
}

impl Ledger {
    fn finish(&self, height: Height, run: exec::Run) -> Execution {
        let exec = Execution {
            height,
            app_hash: run.prepared.root,
            results: run.results,
            delta: delta::encode(&run.prepared.changes),
        };
        self.remember(run.prepared);
        exec
    }
}

#[cfg(test)]
mod tests;
