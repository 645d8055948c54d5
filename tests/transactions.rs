//! Transactions end to end over real processes: submission, commit, proofs,
//! duplicates, a full mempool, and a proposer that includes an invalid
//! transaction.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::Cluster;
use consort::app::ledger::{Account, Action, Tx, account_key, record_key};
use consort::client::Client;
use consort::client::verify::{TrustRoot, Verifier};
use consort::codec::Wire;
use consort::config::{Genesis, Home, read_key};
use consort::types::{Hash, Height, Keypair};

const LONG: Duration = Duration::from_secs(180);
const CHAIN: &str = "consort-test";

fn clients(c: &Cluster, n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| {
            read_key(&c.dir.path().join(format!("clients/client{i}.json"))).expect("client key")
        })
        .collect()
}

fn transfer(from: &Keypair, to: &Keypair, nonce: u64, amount: u64) -> Bytes {
    Bytes::from(
        Tx::new_signed(
            from,
            CHAIN,
            nonce,
            Action::Transfer {
                to: to.public(),
                amount,
            },
        )
        .encode(),
    )
}

async fn balances(cl: &Client, keys: &[Keypair]) -> Vec<Account> {
    let mut out = Vec::new();
    for k in keys {
        let a = cl.account(&k.public()).await.expect("account");
        out.push(Account {
            balance: a.balance,
            nonce: a.nonce,
        });
    }
    out
}

/// Hashes of every committed transaction, counted, from height 1 to `to`.
async fn committed_hashes(cl: &Client, to: u64) -> HashMap<Hash, usize> {
    let mut counts = HashMap::new();
    for h in 1..=to {
        let (b, _) = cl.block(h).await.expect("block");
        for t in &b.txs {
            *counts.entry(Hash::digest(t)).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_5000_txs_from_concurrent_clients_are_committed_exactly_once() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: u64 = 625;
    let mut c = Cluster::generate_with(4, 0, 10, |s| s.clients = CLIENTS);
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());
    let keys = clients(&c, CLIENTS);
    let cl0 = c.client(0).await.expect("client");
    let before: u64 = balances(&cl0, &keys).await.iter().map(|a| a.balance).sum();

    // Each client sends its transactions in nonce order to one node; clients are
    // spread over the four nodes and run concurrently.
    let mut tasks = Vec::new();
    let mut all = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let to = keys[(i + 1) % CLIENTS].clone();
        let txs: Vec<Bytes> = (0..PER_CLIENT)
            .map(|n| transfer(k, &to, n, 1 + n % 3))
            .collect();
        all.extend(txs.iter().map(|t| Hash::digest(t)));
        let addr = c.nodes[i % 4].grpc.clone();
        tasks.push(tokio::spawn(async move {
            let cl = Client::connect(&addr).await.expect("connect");
            for t in txs {
                // ACCEPTED answers once in the mempool; retry while it is full.
                loop {
                    match cl.submit(t.clone(), false).await {
                        Ok(_) => break,
                        Err(consort::client::ClientError::Status(s))
                            if s.code() == tonic::Code::ResourceExhausted =>
                        {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("submit refused: {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    // Wait until the last transaction of every client is committed.
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let accs = balances(&cl0, &keys).await;
        if accs.iter().all(|a| a.nonce == PER_CLIENT) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all committed: {accs:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let latest = cl0.status().await.expect("status").height;
    let counts = committed_hashes(&cl0, latest).await;
    for h in &all {
        assert_eq!(
            counts.get(h),
            Some(&1),
            "transaction {h} committed {:?} times",
            counts.get(h)
        );
    }
    assert_eq!(counts.len(), all.len(), "unexpected extra transactions");
    // Balances are conserved and every node has the same state at the same height.
    assert!(c.wait_height(&[0, 1, 2, 3], latest, LONG).await);
    let after: u64 = balances(&cl0, &keys).await.iter().map(|a| a.balance).sum();
    assert_eq!(before, after, "balances not conserved");
    let mut roots = Vec::new();
    for i in 0..4 {
        let cl = c.client(i).await.expect("client");
        let (b, _) = cl.block(latest).await.expect("block");
        roots.push(b.header.app_hash);
        assert_eq!(
            balances(&cl, &keys).await,
            balances(&cl0, &keys).await,
            "node {i} differs"
        );
    }
    assert!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "state roots differ: {roots:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_proofs_verify_and_tampering_is_caught() {
    let mut c = Cluster::generate_with(4, 0, 11, |s| s.clients = 1);
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());
    let key = clients(&c, 1).remove(0);
    let cl = c.client(1).await.expect("client");
    let put = Tx::new_signed(
        &key,
        CHAIN,
        0,
        Action::Put {
            name: "color".into(),
            value: Bytes::from_static(b"blue"),
        },
    );
    let r = cl
        .submit(Bytes::from(put.encode()), true)
        .await
        .expect("committed");
    assert!(r.height > 0);
    let rec = cl.record(&key.public(), "color").await.expect("record");
    assert!(rec.found);
    assert_eq!(rec.value.as_ref(), b"blue");
    // The client trusts the genesis it holds, not the node's word.
    let genesis = Genesis::load(&Home::new(c.home(0)).genesis()).expect("genesis");
    let verifier = Verifier::new(TrustRoot::from_genesis(&genesis).expect("root"), &cl)
        .await
        .expect("verifier");
    let header = verifier
        .verify_signed_header(rec.header.as_ref())
        .expect("signed header");
    let proof = rec.proof.clone().expect("proof");
    let k = record_key(&key.public(), "color");
    header
        .verify_state(&k, Some(b"blue"), &proof)
        .expect("proof verifies");
    // A tampered value, a tampered proof, or a forged header does not verify.
    assert!(header.verify_state(&k, Some(b"red"), &proof).is_err());
    assert!(header.verify_state(&k, None, &proof).is_err());
    let mut bad = proof.clone();
    if let Some(s) = bad.siblings.first_mut() {
        let mut v = s.to_vec();
        v[0] ^= 1;
        *s = v.into();
    }
    assert!(header.verify_state(&k, Some(b"blue"), &bad).is_err());
    let mut forged = rec.header.clone().expect("header");
    if let Some(h) = forged.header.as_mut() {
        h.app_hash = Hash::digest(b"forged").as_bytes().to_vec().into();
    }
    assert!(verifier.verify_signed_header(Some(&forged)).is_err());
    // A trusted height and hash anchor the same check, the node's validator
    // set checked against the trusted header.
    let (trusted, _) = cl.block(1).await.expect("block 1");
    let by_header = Verifier::new(
        TrustRoot::Header {
            height: Height(1),
            hash: trusted.id(),
        },
        &cl,
    )
    .await
    .expect("verifier from a trusted header");
    assert_eq!(by_header.chain_id(), CHAIN);
    by_header
        .verify_signed_header(rec.header.as_ref())
        .expect("signed header");
    // The account proof too.
    let acc = cl.account(&key.public()).await.expect("account");
    let h = verifier
        .verify_signed_header(acc.header.as_ref())
        .expect("signed");
    let value = Account {
        balance: acc.balance,
        nonce: acc.nonce,
    }
    .encode();
    h.verify_state(
        &account_key(&key.public()),
        Some(&value),
        acc.proof.as_ref().expect("proof"),
    )
    .expect("account proof");
    // The command line: `--prove` needs a trust root and checks against it.
    let query = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_consort"))
            .args(["query", "record", "--name", "color", "--prove", "--json"])
            .args([
                "--owner",
                &key.public().to_hex(),
                "--node",
                &c.nodes[1].grpc,
            ])
            .args(extra)
            .output()
            .expect("run consort query");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = query(&[]);
    assert!(!ok && err.contains("nothing to trust"), "{err}");
    let home = c.home(2).to_string_lossy().into_owned();
    let (ok, out, err) = query(&["--home", &home]);
    assert!(ok && out.contains("\"verified\": true"), "{out}{err}");
    let hash = trusted.id().to_hex();
    let (ok, out, err) = query(&["--trust-height", "1", "--trust-hash", &hash]);
    assert!(ok && out.contains("\"verified\": true"), "{out}{err}");
    let wrong = Hash::digest(b"not the header").to_hex();
    let (ok, _, err) = query(&["--trust-height", "1", "--trust-hash", &wrong]);
    assert!(!ok && err.contains("trusted"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_refused_and_a_tx_sent_to_two_nodes_commits_once() {
    let mut c = Cluster::generate_with(4, 0, 12, |s| s.clients = 2);
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());
    let keys = clients(&c, 2);
    let a = c.client(0).await.expect("client");
    let b = c.client(2).await.expect("client");
    let t0 = transfer(&keys[0], &keys[1], 0, 5);
    a.submit(t0.clone(), true).await.expect("committed");
    // Sent again, to the same node and to another: refused.
    for cl in [&a, &b] {
        let e = cl.submit(t0.clone(), false).await.expect_err("refused");
        let consort::client::ClientError::Status(s) = e else {
            panic!("{e}")
        };
        assert!(
            matches!(
                s.code(),
                tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition
            ),
            "{s:?}"
        );
    }
    // The same new transaction to two nodes at once: committed once.
    let t1 = transfer(&keys[0], &keys[1], 1, 7);
    let (ra, rb) = tokio::join!(a.submit(t1.clone(), true), b.submit(t1.clone(), true));
    assert!(ra.is_ok() || rb.is_ok(), "{ra:?} {rb:?}");
    let latest = a.status().await.expect("status").height + 2;
    assert!(c.wait_height(&[0], latest, LONG).await);
    let counts = committed_hashes(&a, latest).await;
    assert_eq!(counts.get(&Hash::digest(&t1)), Some(&1));
    let acc = a.account(&keys[1].public()).await.expect("account");
    let initial = 1_000_000_000;
    assert_eq!(acc.balance, initial + 12);

    // Over one submit stream: each answer in order, a refusal in the middle
    // ends nothing.
    let t2 = transfer(&keys[0], &keys[1], 2, 1);
    let t3 = transfer(&keys[0], &keys[1], 3, 2);
    let answers = b
        .submit_many(vec![
            t2.clone(),
            t2.clone(),
            Bytes::from_static(b"not a transaction"),
            t1.clone(),
            t3.clone(),
        ])
        .await
        .expect("stream");
    let codes: Vec<tonic::Code> = answers
        .iter()
        .map(|a| a.as_ref().map_or_else(|s| s.code(), |_| tonic::Code::Ok))
        .collect();
    assert_eq!(codes[0], tonic::Code::Ok, "{answers:?}");
    assert_eq!(codes[1], tonic::Code::AlreadyExists, "{answers:?}");
    assert_eq!(codes[2], tonic::Code::InvalidArgument, "{answers:?}");
    assert!(
        matches!(
            codes[3],
            tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition
        ),
        "{answers:?}"
    );
    assert_eq!(codes[4], tonic::Code::Ok, "{answers:?}");
    assert_eq!(answers[4].as_ref().ok(), Some(&Hash::digest(&t3)));
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let acc = a.account(&keys[1].public()).await.expect("account");
        if acc.balance == initial + 15 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mempool_answers_resource_exhausted_and_the_node_stays_live() {
    let mut c = Cluster::generate_with(4, 0, 13, |s| {
        s.clients = 1;
        // Slow blocks so the pool fills up.
        s.consensus.commit_delay_ms = 1500;
    });
    // A small pool on node 0.
    let cfg_path = c.home(0).join("config.toml");
    let mut cfg = consort::config::NodeConfig::load(&cfg_path).expect("config");
    cfg.mempool.max_txs = 20;
    std::fs::write(&cfg_path, cfg.to_commented_toml()).expect("write config");
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());
    let key = clients(&c, 1).remove(0);
    let other = Keypair::from_seed([9; 32]);
    let cl = c.client(0).await.expect("client");
    let mut exhausted = 0;
    for n in 0..200u64 {
        match cl.submit(transfer(&key, &other, n, 1), false).await {
            Ok(_) => {}
            Err(consort::client::ClientError::Status(s))
                if s.code() == tonic::Code::ResourceExhausted =>
            {
                exhausted += 1;
                break;
            }
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert!(exhausted > 0, "the pool of 20 never filled up");
    let h = cl.status().await.expect("status").height;
    assert!(
        c.wait_height(&[0, 1, 2, 3], h + 3, LONG).await,
        "node stopped after a full pool\n{}",
        c.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposer_with_an_invalid_tx_gets_nil_prevotes_and_a_later_round_commits() {
    let mut c = Cluster::generate_with(4, 0, 14, |s| s.clients = 1);
    // Node 0 puts an invalid transaction in every proposal (the `faults` feature).
    c.set_env(0, "CONSORT_FAULTS", "propose-invalid-tx");
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 12, LONG).await, "{}", c.logs());
    let cl = c.client(1).await.expect("client");
    let key0 = read_key(&c.home(0).join("node_key.json"))
        .expect("key")
        .public();
    let mut rounds_after_bad = 0;
    for h in 1..=12u64 {
        let (b, _) = cl.block(h).await.expect("block");
        // No committed block holds the invalid transaction, and none was proposed
        // by the faulty node.
        assert!(
            b.txs.iter().all(|t| t.as_ref() != b"not a transaction"),
            "height {h}"
        );
        assert_ne!(
            b.header.proposer, key0,
            "the faulty proposer's block was committed at {h}"
        );
        let commit = cl.commit(h).await.expect("commit");
        if commit.round.0 > 0 {
            rounds_after_bad += 1;
        }
    }
    assert!(
        rounds_after_bad > 0,
        "the faulty proposer never got a turn in 12 heights"
    );
}
