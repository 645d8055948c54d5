//! Executing a block's transactions on the committed state.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::Ledger;
use super::keys::{Account, account_key, record_key};
use super::tx::{Action, Tx, TxFormatError};
use crate::app::state::{Entry, PreparedChanges};
use crate::app::{AppError, Event, RejectCode, TxResult};
use crate::codec::decode_tx;
use crate::types::{Hash, Height, PublicKey, SignedItem, verify_batch};

/// How a run treats a transaction that fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Checking a proposal: any failing transaction makes the block invalid.
    Strict,
    /// Building a proposal: failing transactions are left out.
    Lenient,
    /// Applying a block that more than 2/3 of the validators committed: it is
    /// applied whatever its transactions say. A failing transaction stays in
    /// the block with a failure result and changes nothing, the same result on
    /// every node.
    Certified,
}

/// The outcome of running transactions.
pub struct Run {
    /// Transactions kept (all of them unless lenient).
    pub kept: Vec<Bytes>,
    /// One result per kept transaction.
    pub results: Vec<TxResult>,
    /// The state changes and the root they lead to.
    pub prepared: PreparedChanges,
}

/// The block's changes on top of the committed state.
struct Overlay<'a> {
    ledger: &'a Ledger,
    changes: BTreeMap<Hash, Option<Entry>>,
}

type Reject = (RejectCode, String);

impl Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, AppError> {
        let kh = Hash::digest(key);
        match self.changes.get(&kh) {
            Some(e) => Ok(e.clone()),
            None => self
                .ledger
                .state
                .get(&kh)
                .map_err(|e| AppError::Internal(e.to_string())),
        }
    }

    fn account(&self, owner: &PublicKey) -> Result<Option<Account>, AppError> {
        match self.get(&account_key(owner))? {
            Some(e) => Account::decode(&e.value)
                .map(Some)
                .ok_or_else(|| AppError::Internal("corrupt account entry".into())),
            None => Ok(None),
        }
    }

    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let kh = Hash::digest(&key);
        self.changes
            .insert(kh, value.map(|value| Entry { key, value }));
    }

    fn set_account(&mut self, owner: &PublicKey, acc: Account) {
        self.set(account_key(owner), Some(acc.encode()));
    }

    /// Applies one transaction, or says why it must not be in a block. On a
    /// refusal nothing has changed.
    fn apply(&mut self, tx: &Tx) -> Result<Result<TxResult, Reject>, AppError> {
        let Some(mut acc) = self.account(&tx.sender)? else {
            return Ok(Err((
                RejectCode::UnknownAccount,
                format!("account {} does not exist", tx.sender),
            )));
        };
        if tx.nonce < acc.nonce {
            return Ok(Err((
                RejectCode::StaleNonce,
                format!("nonce {} already used; next is {}", tx.nonce, acc.nonce),
            )));
        }
        if tx.nonce > acc.nonce {
            return Ok(Err((
                RejectCode::FutureNonce,
                format!(
                    "nonce {} is ahead of the next nonce {}",
                    tx.nonce, acc.nonce
                ),
            )));
        }
        acc.nonce += 1;
        let sender = tx.sender.to_hex();
        let (log, event) = match &tx.action {
            Action::Transfer { to, amount } => {
                if *amount > acc.balance {
                    return Ok(Err((
                        RejectCode::InsufficientFunds,
                        format!("transfer of {amount} exceeds the balance {}", acc.balance),
                    )));
                }
                if to == &tx.sender {
                    self.set_account(&tx.sender, acc);
                } else {
                    let mut dest = self.account(to)?.unwrap_or_default();
                    let Some(new_balance) = dest.balance.checked_add(*amount) else {
                        return Ok(Err((
                            RejectCode::Malformed,
                            "the recipient's balance would overflow".into(),
                        )));
                    };
                    acc.balance -= amount;
                    dest.balance = new_balance;
                    self.set_account(&tx.sender, acc);
                    self.set_account(to, dest);
                }
                (
                    format!("transferred {amount}"),
                    Event {
                        kind: "transfer".into(),
                        attributes: vec![
                            ("from".into(), sender),
                            ("to".into(), to.to_hex()),
                            ("amount".into(), amount.to_string()),
                        ],
                    },
                )
            }
            Action::Put { name, value } => {
                self.set_account(&tx.sender, acc);
                self.set(record_key(&tx.sender, name), Some(value.to_vec()));
                (
                    format!("record {name:?} set"),
                    Event {
                        kind: "put".into(),
                        attributes: vec![("owner".into(), sender), ("name".into(), name.clone())],
                    },
                )
            }
            Action::Delete { name } => {
                let key = record_key(&tx.sender, name);
                let existed = self.get(&key)?.is_some();
                self.set_account(&tx.sender, acc);
                self.set(key, None);
                (
                    if existed {
                        format!("record {name:?} deleted")
                    } else {
                        format!("record {name:?} did not exist")
                    },
                    Event {
                        kind: "delete".into(),
                        attributes: vec![("owner".into(), sender), ("name".into(), name.clone())],
                    },
                )
            }
        };
        Ok(Ok(TxResult {
            code: 0,
            log,
            events: vec![event],
        }))
    }
}

fn invalid(index: usize, code: RejectCode, reason: String) -> AppError {
    AppError::InvalidTx {
        index,
        code,
        reason,
    }
}

/// The result of a transaction that failed in a certified block.
fn failed(code: RejectCode, reason: String) -> TxResult {
    TxResult {
        code: code.result_code(),
        log: reason,
        events: vec![],
    }
}

/// Runs `txs` as block `height`; `mode` says what a failing transaction does.
pub fn run(ledger: &Ledger, height: Height, txs: Vec<Bytes>, mode: Mode) -> Result<Run, AppError> {
    let (committed, _) = ledger.state.committed();
    if height != committed.next() {
        return Err(AppError::WrongHeight {
            expected: committed.next(),
            got: height,
        });
    }
    // Decode everything, and verify in one batch the signatures this node has
    // not verified before.
    let mut decoded: Vec<Option<Tx>> = Vec::with_capacity(txs.len());
    // Why a transaction already failed (certified mode), by position.
    let mut failures: BTreeMap<usize, TxResult> = BTreeMap::new();
    let mut unverified: Vec<usize> = Vec::new();
    let mut hashes: Vec<Hash> = Vec::with_capacity(txs.len());
    for (i, b) in txs.iter().enumerate() {
        let h = Tx::hash_of(b);
        hashes.push(h);
        match decode_tx(b) {
            Ok(tx) => {
                if !ledger.verified.contains(&h) {
                    unverified.push(i);
                }
                decoded.push(Some(tx));
            }
            Err(e) => {
                let code = match e {
                    TxFormatError::TooLarge { .. } => RejectCode::TooLarge,
                    _ => RejectCode::Malformed,
                };
                match mode {
                    Mode::Strict => return Err(invalid(i, code, e.to_string())),
                    Mode::Certified => {
                        failures.insert(i, failed(code, e.to_string()));
                    }
                    Mode::Lenient => {}
                }
                decoded.push(None);
            }
        }
    }
    if !unverified.is_empty() {
        let msgs: Vec<Vec<u8>> = unverified
            .iter()
            .filter_map(|i| {
                decoded[*i]
                    .as_ref()
                    .map(|t| t.to_sign_bytes(&ledger.chain_id))
            })
            .collect();
        let txs_ref: Vec<&Tx> = unverified
            .iter()
            .filter_map(|i| decoded[*i].as_ref())
            .collect();
        let items: Vec<SignedItem<'_>> = txs_ref
            .iter()
            .zip(&msgs)
            .map(|(t, m)| SignedItem {
                key: &t.sender,
                msg: m,
                sig: &t.signature,
            })
            .collect();
        match verify_batch(&items) {
            Ok(()) => {
                for i in &unverified {
                    ledger.verified.insert(hashes[*i]);
                }
            }
            Err(_) => {
                // Find every bad one (strict fails on the first, the others
                // leave them out or record their failure).
                for i in &unverified {
                    let ok = decoded[*i]
                        .as_ref()
                        .is_some_and(|t| t.verify(&ledger.chain_id).is_ok());
                    if ok {
                        ledger.verified.insert(hashes[*i]);
                        continue;
                    }
                    let reason = "bad signature".to_string();
                    match mode {
                        Mode::Strict => {
                            return Err(invalid(*i, RejectCode::BadSignature, reason));
                        }
                        Mode::Certified => {
                            failures.insert(*i, failed(RejectCode::BadSignature, reason));
                        }
                        Mode::Lenient => {}
                    }
                    decoded[*i] = None;
                }
            }
        }
    }
    let mut overlay = Overlay {
        ledger,
        changes: BTreeMap::new(),
    };
    let mut kept = Vec::with_capacity(txs.len());
    let mut results = Vec::with_capacity(txs.len());
    for (i, (bytes, tx)) in txs.into_iter().zip(decoded).enumerate() {
        let Some(tx) = tx else {
            if let Some(r) = failures.remove(&i) {
                kept.push(bytes);
                results.push(r);
            }
            continue;
        };
        match overlay.apply(&tx)? {
            Ok(r) => {
                kept.push(bytes);
                results.push(r);
            }
            Err((code, reason)) => match mode {
                Mode::Strict => return Err(invalid(i, code, reason)),
                Mode::Certified => {
                    kept.push(bytes);
                    results.push(failed(code, reason));
                }
                Mode::Lenient => {}
            },
        }
    }
    let Some(prepared) = ledger.state.prepare_on(committed, overlay.changes) else {
        return Err(AppError::WrongHeight {
            expected: ledger.state.committed().0.next(),
            got: height,
        });
    };
    Ok(Run {
        kept,
        results,
        prepared,
    })
}

/// Batch-verifies the signatures of well-formed transactions not verified yet
/// and records those that pass.
pub fn preverify(ledger: &Ledger, txs: &[Bytes]) {
    let pending: Vec<(Hash, Tx)> = txs
        .iter()
        .filter_map(|b| {
            let h = Tx::hash_of(b);
            if ledger.verified.contains(&h) {
                return None;
            }
            decode_tx(b).ok().map(|t| (h, t))
        })
        .collect();
    if pending.is_empty() {
        return;
    }
    let msgs: Vec<Vec<u8>> = pending
        .iter()
        .map(|(_, t)| t.to_sign_bytes(&ledger.chain_id))
        .collect();
    let items: Vec<SignedItem<'_>> = pending
        .iter()
        .zip(&msgs)
        .map(|((_, t), m)| SignedItem {
            key: &t.sender,
            msg: m,
            sig: &t.signature,
        })
        .collect();
    if verify_batch(&items).is_ok() {
        for (h, _) in &pending {
            ledger.verified.insert(*h);
        }
    }
    // On failure each transaction is verified alone by check_tx, which reports
    // the bad one.
}
