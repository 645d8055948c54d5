use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::app::state::{MemBackend, Proven};
use crate::codec::Wire;
use crate::types::Keypair;

const CHAIN: &str = "test-chain";

fn key(i: u8) -> Keypair {
    Keypair::from_seed([i; 32])
}

fn ledger(funded: &[(u8, u64)]) -> Ledger {
    let genesis: Vec<GenesisAccount> = funded
        .iter()
        .map(|(i, b)| GenesisAccount {
            public_key: key(*i).public(),
            balance: *b,
        })
        .collect();
    Ledger::open(CHAIN, Arc::new(MemBackend::default()), &genesis).unwrap()
}

fn transfer(from: u8, to: u8, nonce: u64, amount: u64) -> Bytes {
    Bytes::from(
        Tx::new_signed(
            &key(from),
            CHAIN,
            nonce,
            Action::Transfer {
                to: key(to).public(),
                amount,
            },
        )
        .encode(),
    )
}

fn put(from: u8, nonce: u64, name: &str, value: &[u8]) -> Bytes {
    Bytes::from(
        Tx::new_signed(
            &key(from),
            CHAIN,
            nonce,
            Action::Put {
                name: name.into(),
                value: Bytes::copy_from_slice(value),
            },
        )
        .encode(),
    )
}

fn commit_block(l: &Ledger, txs: &[Bytes]) -> Execution {
    let h = l.committed().0.next();
    let e = l.execute(h, txs).unwrap();
    l.commit(&e).unwrap();
    e
}

fn code_of(r: Result<TxMeta, AppError>) -> Option<RejectCode> {
    match r {
        Err(AppError::InvalidTx { code, .. }) => Some(code),
        _ => None,
    }
}

#[test]
fn transfers_conserve_balance_and_advance_nonces() {
    let l = ledger(&[(1, 100), (2, 50)]);
    commit_block(
        &l,
        &[
            transfer(1, 2, 0, 30),
            transfer(2, 3, 0, 70),
            transfer(1, 1, 1, 5),
        ],
    );
    let bal = |i| l.account(&key(i).public()).unwrap().unwrap_or_default();
    assert_eq!(
        bal(1),
        Account {
            balance: 70,
            nonce: 2
        }
    );
    assert_eq!(
        bal(2),
        Account {
            balance: 10,
            nonce: 1
        }
    );
    assert_eq!(
        bal(3),
        Account {
            balance: 70,
            nonce: 0
        }
    );
    assert_eq!(bal(1).balance + bal(2).balance + bal(3).balance, 150);
}

#[test]
fn check_tx_refusals_have_the_right_code() {
    let l = ledger(&[(1, 100)]);
    assert!(l.check_tx(&transfer(1, 2, 0, 10)).is_ok());
    assert_eq!(
        code_of(l.check_tx(&transfer(9, 2, 0, 1))),
        Some(RejectCode::UnknownAccount)
    );
    assert_eq!(
        code_of(l.check_tx(&transfer(1, 2, 0, 101))),
        Some(RejectCode::InsufficientFunds)
    );
    assert_eq!(code_of(l.check_tx(&[1, 2, 3])), Some(RejectCode::Malformed));
    let other_chain = Tx::new_signed(
        &key(1),
        "other",
        0,
        Action::Transfer {
            to: key(2).public(),
            amount: 1,
        },
    );
    assert_eq!(
        code_of(l.check_tx(&other_chain.encode())),
        Some(RejectCode::BadSignature)
    );
    commit_block(&l, &[transfer(1, 2, 0, 10)]);
    assert_eq!(
        code_of(l.check_tx(&transfer(1, 2, 0, 10))),
        Some(RejectCode::StaleNonce)
    );
    let meta = l.check_tx(&transfer(1, 2, 5, 1)).unwrap();
    assert_eq!(meta.committed_nonce, 1);
    assert_eq!(meta.sender, Some((key(1).public(), 5)));
}

#[test]
fn a_block_with_a_refused_transaction_is_invalid_and_prepare_drops_it() {
    let l = ledger(&[(1, 100)]);
    let txs = vec![
        transfer(1, 2, 0, 60),
        transfer(1, 2, 1, 60),
        put(1, 1, "n", b"v"),
    ];
    assert!(matches!(
        l.execute(Height(1), &txs),
        Err(AppError::InvalidTx {
            index: 1,
            code: RejectCode::InsufficientFunds,
            ..
        })
    ));
    let (kept, exec) = l.prepare(Height(1), txs.clone()).unwrap();
    assert_eq!(kept, vec![txs[0].clone(), txs[2].clone()]);
    assert_eq!(exec.results.len(), 2);
    // Executing what prepare kept gives the same root (what validators check).
    assert_eq!(l.execute(Height(1), &kept).unwrap().app_hash, exec.app_hash);
    // A replayed transaction, a future nonce, and a forged signature.
    assert!(l.execute(Height(1), &[transfer(1, 2, 1, 1)]).is_err());
    let mut forged = Tx::new_signed(
        &key(1),
        CHAIN,
        0,
        Action::Transfer {
            to: key(2).public(),
            amount: 1,
        },
    );
    forged.signature.0[3] ^= 1;
    assert!(matches!(
        l.execute(Height(1), &[Bytes::from(forged.encode())]),
        Err(AppError::InvalidTx {
            code: RejectCode::BadSignature,
            ..
        })
    ));
}

#[test]
fn execution_is_deterministic_and_replay_reaches_the_same_root() {
    let a = ledger(&[(1, 1000), (2, 1000)]);
    let b = ledger(&[(1, 1000), (2, 1000)]);
    let blocks = vec![
        vec![transfer(1, 2, 0, 5), put(2, 0, "x", b"1")],
        vec![
            transfer(2, 4, 1, 7),
            put(1, 1, "y", b"2"),
            put(1, 2, "y", b"3"),
        ],
    ];
    let mut deltas = vec![];
    for txs in &blocks {
        let ea = commit_block(&a, txs);
        let eb = commit_block(&b, txs);
        assert_eq!(ea.app_hash, eb.app_hash);
        deltas.push(ea.delta.clone());
    }
    let c = ledger(&[(1, 1000), (2, 1000)]);
    for (i, d) in deltas.iter().enumerate() {
        c.replay(Height(i as u64 + 1), d).unwrap();
    }
    assert_eq!(c.committed(), a.committed());
}

#[test]
fn record_queries_prove_presence_and_absence() {
    let l = ledger(&[(1, 10)]);
    commit_block(&l, &[put(1, 0, "color", b"blue")]);
    let (_, root) = l.committed();
    let k = record_key(&key(1).public(), "color");
    let q = l.query(&k).unwrap();
    assert_eq!(q.value.as_deref(), Some(&b"blue"[..]));
    assert_eq!(
        q.proof.verify(&Hash::digest(&k), &root),
        Some(Proven::Present(Hash::digest(b"blue")))
    );
    let missing = record_key(&key(1).public(), "size");
    let q = l.query(&missing).unwrap();
    assert_eq!(q.value, None);
    assert_eq!(
        q.proof.verify(&Hash::digest(&missing), &root),
        Some(Proven::Absent)
    );
    // Deleting it.
    let del = Tx::new_signed(
        &key(1),
        CHAIN,
        1,
        Action::Delete {
            name: "color".into(),
        },
    );
    commit_block(&l, &[Bytes::from(del.encode())]);
    let (_, root) = l.committed();
    let q = l.query(&k).unwrap();
    assert_eq!(
        q.proof.verify(&Hash::digest(&k), &root),
        Some(Proven::Absent)
    );
}

/// A certified block is applied whatever its transactions say: each one that
/// fails keeps its place with a failure result and changes nothing; the same
/// block checked as a proposal is invalid.
#[test]
fn a_certified_block_keeps_failing_transactions_with_failure_results() {
    let l = ledger(&[(1, 100), (2, 50)]);
    let mut forged = Tx::new_signed(
        &key(2),
        CHAIN,
        0,
        Action::Put {
            name: "n".into(),
            value: Bytes::from_static(b"v"),
        },
    );
    forged.signature.0[40] ^= 1;
    let txs = vec![
        transfer(1, 2, 0, 10),                    // ok
        Bytes::from_static(b"not a transaction"), // malformed
        Bytes::from(forged.encode()),             // bad signature
        transfer(1, 2, 0, 10),                    // nonce 0 taken above
        transfer(1, 2, 5, 10),                    // nonce ahead
        transfer(2, 1, 0, 1_000),                 // more than the balance
        transfer(9, 1, 0, 1),                     // no such account
        put(2, 0, "ok", b"yes"),                  // ok
    ];
    let h = l.committed().0.next();
    assert!(
        l.execute(h, &txs).is_err(),
        "a proposal holding them is invalid"
    );
    let e = l.execute_certified(h, &txs).unwrap();
    let codes: Vec<u32> = e.results.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec![
            0,
            RejectCode::Malformed.result_code(),
            RejectCode::BadSignature.result_code(),
            RejectCode::StaleNonce.result_code(),
            RejectCode::FutureNonce.result_code(),
            RejectCode::InsufficientFunds.result_code(),
            RejectCode::UnknownAccount.result_code(),
            0,
        ]
    );
    assert!(e.results[1..7].iter().all(|r| !r.log.is_empty()));
    // Deterministic: the same block, executed again, gives the same outcome.
    let again = l.execute_certified(h, &txs).unwrap();
    assert_eq!(again.app_hash, e.app_hash);
    assert_eq!(again.results, e.results);
    // Only the two good ones took effect.
    let only_good = ledger(&[(1, 100), (2, 50)]);
    let good = only_good
        .execute(h, &[txs[0].clone(), txs[7].clone()])
        .unwrap();
    assert_eq!(e.app_hash, good.app_hash);
    l.commit(&e).unwrap();
    assert_eq!(l.account(&key(1).public()).unwrap().unwrap().nonce, 1);
    assert_eq!(l.account(&key(2).public()).unwrap().unwrap().nonce, 1);
}
