//! One signature verdict on every node, whatever path a transaction takes.
//!
//! A client that knows its own secret scalar can sign with a nonce `R = rB + T`
//! (T a torsion point) or hold a key with a torsion component. Under a rule
//! whose single and batch checks disagree on such signatures, their fate
//! depends on how they happen to be grouped: admitted by one node and refused
//! by another, committed by the validators and refused by a node replaying the
//! chain, which then blames (and bans) the honest peers that served it. This
//! test streams hundreds of them between ordinary transactions, requires every
//! node to reach the same verdict on each, then wipes a validator's chain and
//! has it sync from genesis to the tip with no peer banned.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;
use consort::app::ledger::{Action, Tx};
use consort::codec::Wire;
use consort::config::{Home, read_key};
use consort::types::{Hash, Keypair, Signature};
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

const LONG: Duration = Duration::from_secs(180);
const CHAIN: &str = "consort-test";
/// Transactions per client account; every other one carries a torsioned nonce.
const PER_CLIENT: u64 = 200;
const CLIENTS: usize = 2;
/// The validator whose chain is wiped and synced again.
const WIPED: usize = 3;

/// The secret scalar of a key (RFC 8032: the clamped first half of
/// SHA-512(seed)).
fn secret_scalar(key: &Keypair) -> Scalar {
    let h = Sha512::digest(key.seed());
    let mut a: [u8; 32] = h[..32].try_into().expect("32 bytes");
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    Scalar::from_bytes_mod_order(a)
}

/// Signs `msg` with the nonce `R = rB + T` for the torsion point `T` chosen by
/// `which` (0 is the identity: an ordinary nonce). The equation holds up to
/// torsion: `[s]B = R + [k]A - T`.
fn sign_torsioned(key: &Keypair, msg: &[u8], which: usize, salt: u64) -> Signature {
    let a = secret_scalar(key);
    let r = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(b"nonce")
            .chain_update(key.seed())
            .chain_update(salt.to_le_bytes())
            .chain_update(msg)
            .finalize()
            .into(),
    );
    let big_r = (r * B + EIGHT_TORSION[which % 8]).compress().to_bytes();
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(big_r)
            .chain_update(key.public().as_bytes())
            .chain_update(msg)
            .finalize()
            .into(),
    );
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    Signature(sig)
}

/// A record write by `key` with nonce `nonce`, its signature's nonce point
/// torsioned when `torsion` is not 0.
fn put(key: &Keypair, nonce: u64, torsion: usize) -> Bytes {
    let action = Action::Put {
        name: format!("r{nonce}"),
        value: Bytes::from(vec![nonce as u8; 32]),
    };
    let sender = key.public();
    let signature = if torsion == 0 {
        key.sign(&Tx::sign_bytes(CHAIN, &sender, nonce, &action))
    } else {
        sign_torsioned(
            key,
            &Tx::sign_bytes(CHAIN, &sender, nonce, &action),
            torsion,
            nonce,
        )
    };
    Bytes::from(
        Tx {
            sender,
            nonce,
            action,
            signature,
        }
        .encode(),
    )
}

/// What one node says of a transaction: (height, index, result code).
type Fate = (u64, u32, u32);

async fn fate_on(c: &Cluster, node: usize, hash: &Hash) -> Option<Fate> {
    let cl = c.client(node).await?;
    let r = cl.get_tx(hash).await.ok()?;
    Some((r.height, r.index, r.result.map_or(u32::MAX, |r| r.code)))
}

async fn banned_total(c: &Cluster, node: usize) -> f64 {
    c.metric(node, "consort_peers_banned_total")
        .await
        .expect("banned metric")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torsioned_signatures_get_one_verdict_and_a_wiped_validator_resyncs_without_bans() {
    let mut c = Cluster::generate_with(4, 0, 26, |s| s.clients = CLIENTS);
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());
    let keys: Vec<Keypair> = (0..CLIENTS)
        .map(|i| {
            read_key(&c.dir.path().join(format!("clients/client{i}.json"))).expect("client key")
        })
        .collect();

    // Every other transaction of each account has a torsioned nonce, cycling
    // through the seven non-trivial torsion points (order 2, 4 and 8).
    let mut txs: Vec<(Bytes, bool)> = Vec::new();
    for nonce in 0..PER_CLIENT {
        for key in &keys {
            let torsion = if nonce % 2 == 1 {
                1 + (nonce as usize / 2) % 7
            } else {
                0
            };
            txs.push((put(key, nonce, torsion), torsion != 0));
        }
    }
    let torsioned = txs.iter().filter(|(_, t)| *t).count();
    println!(
        "{} transactions, {torsioned} with a torsioned nonce",
        txs.len()
    );

    // Half the stream to node 0, the other half (the other account) to node 1:
    // each node admits some directly and the rest through gossip.
    let mut answers: Vec<Result<Hash, tonic::Status>> = Vec::new();
    for (node, key) in keys.iter().enumerate() {
        let mine: Vec<Bytes> = txs
            .iter()
            .filter(|(b, _)| consort::codec::decode_tx(b).expect("decodes").sender == key.public())
            .map(|(b, _)| b.clone())
            .collect();
        let cl = c.client(node).await.expect("client");
        answers.extend(cl.submit_many(mine).await.expect("stream"));
    }
    let refused: Vec<String> = answers
        .iter()
        .filter_map(|a| a.as_ref().err().map(|s| s.message().to_string()))
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} refused at admission, e.g. {:?}",
        refused.len(),
        answers.len(),
        refused.first()
    );

    // Every transaction committed, with the same fate on every node.
    let hashes: Vec<Hash> = txs.iter().map(|(b, _)| Hash::digest(b)).collect();
    let deadline = Instant::now() + LONG;
    let mut fates: HashMap<Hash, Fate> = HashMap::new();
    for h in &hashes {
        loop {
            if let Some(f) = fate_on(&c, 0, h).await {
                fates.insert(*h, f);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "transaction {h} was never committed\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for node in 1..4 {
        for h in &hashes {
            assert_eq!(
                fate_on(&c, node, h).await.as_ref(),
                fates.get(h),
                "node {node} disagrees on {h}"
            );
        }
    }
    for ((_, t), h) in txs.iter().zip(&hashes) {
        assert_eq!(
            fates[h].2, 0,
            "transaction {h} (torsioned: {t}) did not execute"
        );
    }

    // Wipe one validator's chain (its key and signing state stay: it must not
    // sign anything it signed before) and let it sync from genesis.
    for i in 0..4 {
        assert_eq!(banned_total(&c, i).await, 0.0, "node {i} banned a peer");
    }
    c.kill(WIPED);
    let home = Home::new(c.home(WIPED));
    std::fs::remove_dir_all(home.data().join("db")).expect("wipe the chain");
    c.start(WIPED);
    let tip = c.height(0).await.expect("height") + 3;
    assert!(
        c.wait_height(&[0, 1, 2, WIPED], tip, LONG).await,
        "the wiped validator did not reach the tip\n{}",
        c.logs()
    );
    for h in &hashes {
        assert_eq!(
            fate_on(&c, WIPED, h).await.as_ref(),
            fates.get(h),
            "the re-synced node disagrees on {h}"
        );
    }
    for i in 0..4 {
        assert_eq!(
            banned_total(&c, i).await,
            0.0,
            "node {i} banned a peer\n{}",
            c.logs()
        );
    }
    let log = c.log_of(WIPED);
    assert!(
        !log.contains("bad message from peer"),
        "the re-synced node blamed a peer:\n{}",
        log.lines()
            .filter(|l| l.contains("bad message"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    c.assert_same_chain(&[0, 1, 2, WIPED], 1, tip).await;
}
