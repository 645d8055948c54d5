//! What a client is told, over real processes: COMMITTED only for a block that
//! is durable, on the block-sync path too; an honest retry of a COMMITTED
//! submission does not cancel the first; and a node behind its peers says so
//! even when it has lost them.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;
use consort::app::ledger::{Action, Tx};
use consort::codec::Wire;
use consort::config::read_key;
use consort::types::Keypair;

const LONG: Duration = Duration::from_secs(180);
const CHAIN: &str = "consort-test";

fn client_key(c: &Cluster, i: usize) -> Keypair {
    read_key(&c.dir.path().join(format!("clients/client{i}.json"))).expect("client key")
}

fn put(key: &Keypair, nonce: u64, name: &str) -> Bytes {
    Bytes::from(
        Tx::new_signed(
            key,
            CHAIN,
            nonce,
            Action::Put {
                name: name.into(),
                value: Bytes::from_static(b"v"),
            },
        )
        .encode(),
    )
}

/// Waits until node `i` answers status over gRPC.
async fn wait_up(c: &Cluster, i: usize) {
    let deadline = Instant::now() + LONG;
    while c.height(i).await.is_none() {
        assert!(Instant::now() < deadline, "node {i} never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node catching up by block sync appends fetched blocks without an fsync
/// and makes a batch durable at once. A client waiting for a transaction in
/// such a block must hear COMMITTED only after that fsync: here the node is
/// made to crash just before it, and the client must not have been told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_is_answered_only_after_the_fsync_in_block_sync() {
    let mut c = Cluster::generate_with(4, 0, 29, |s| s.clients = 1);
    for i in 0..3 {
        c.start(i);
    }
    assert!(c.wait_height(&[0, 1, 2], 2, LONG).await, "{}", c.logs());
    let key = client_key(&c, 0);
    let tx = put(&key, 0, "durable");
    let cl0 = c.client(0).await.expect("client");
    let committed = cl0.submit(tx.clone(), true).await.expect("committed");
    assert!(c.wait_height(&[0, 1, 2], committed.height + 2, LONG).await);
    // The three stop; node 3, which has nothing, starts alone and takes the
    // same transaction into its pool (its state is genesis: the nonce is
    // next), with a client waiting for the commit.
    for i in 0..3 {
        c.kill(i);
    }
    c.set_env(3, "CONSORT_CRASH_AT", "block-sync-before-fsync");
    c.start(3);
    wait_up(&c, 3).await;
    let cl3 = c.client(3).await.expect("client");
    let waiting = tokio::spawn(async move { cl3.submit(tx, true).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "answered before any block was synced"
    );
    // The others come back; node 3 fetches the block holding it and crashes
    // before that block is durable.
    for i in 0..3 {
        c.start(i);
    }
    let deadline = Instant::now() + LONG;
    while c.is_running(3) {
        assert!(
            Instant::now() < deadline,
            "node 3 never reached its fsync\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.log_of(3).contains("TEST CRASH POINT REACHED"),
        "{}",
        c.logs()
    );
    let answer = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the submission ends with the node")
        .expect("task");
    assert!(
        answer.is_err(),
        "COMMITTED was answered for a block that was never made durable: {answer:?}"
    );
    // Restarted normally, it syncs and the transaction is there.
    c.kill(3);
    c.set_env(3, "CONSORT_CRASH_AT", "");
    c.start(3);
    let tip = c.height(0).await.expect("height");
    assert!(c.wait_height(&[3], tip, LONG).await, "{}", c.logs());
}

/// Two clients (or one retrying after a lost answer) submit the same
/// transaction in COMMITTED mode: both hear of its commit, and the second
/// submission, refused as a duplicate, does not cancel the first's wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_committed_submission_does_not_cancel_the_first() {
    let mut c = Cluster::generate_with(4, 0, 30, |s| {
        s.clients = 1;
        // Slow blocks: the retry arrives while the first waits.
        s.consensus.commit_delay_ms = 1500;
        s.consensus.create_empty_blocks = false;
    });
    c.start_all();
    let key = client_key(&c, 0);
    wait_up(&c, 0).await;
    let cl = c.client(0).await.expect("client");
    // A first transaction gets the chain going (offered until the node serves).
    let deadline = Instant::now() + LONG;
    while let Err(e) = cl.submit(put(&key, 0, "first"), true).await {
        assert!(Instant::now() < deadline, "{e}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tx = put(&key, 1, "retried");
    let (a, b) = (cl.clone(), cl.clone());
    let (t1, t2) = (tx.clone(), tx.clone());
    let first = tokio::spawn(async move { a.submit(t1, true).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let retry = tokio::spawn(async move { b.submit(t2, true).await });
    let first = first.await.expect("task").expect("the first submission");
    let retry = retry.await.expect("task").expect("the retry");
    assert!(first.height > 0, "{first:?}");
    assert_eq!((first.height, first.index), (retry.height, retry.index));
    assert_eq!(first.hash, retry.hash);
}

/// A node behind its peers reports `catching_up` and how far behind it is,
/// also once it has lost every peer that is ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_peers_it_lost_still_reports_catching_up() {
    let mut c = Cluster::generate(4, 0, 34);
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());
    c.kill(3);
    let h = c.height(0).await.expect("height");
    assert!(
        c.wait_height(&[0, 1, 2], h + 200, LONG).await,
        "{}",
        c.logs()
    );
    // Node 3 comes back slowed down (half a second per fetched block), hears
    // where its peers stand, and then loses them all: the blocks it has in
    // flight (a window of 64) leave it well behind.
    c.set_env(3, "CONSORT_SYNC_THROTTLE_MS", "500");
    c.start(3);
    let deadline = Instant::now() + LONG;
    loop {
        let cl = c.client(3).await;
        if let Some(cl) = cl {
            if let Ok(s) = cl.status().await {
                if s.peer_max_height > s.height + 10 {
                    assert!(s.catching_up, "behind connected peers: {s:?}");
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..3 {
        c.kill(i);
    }
    // Once it has noticed (QUIC idle timeout), it still says it is behind.
    let deadline = Instant::now() + LONG;
    let s = loop {
        if let Some(cl) = c.client(3).await {
            if let Ok(s) = cl.status().await {
                if s.peers.iter().all(|p| !p.connected) {
                    break s;
                }
            }
        }
        assert!(Instant::now() < deadline, "peers never went away");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(s.peer_max_height > s.height + 1, "{s:?}");
    assert!(
        s.catching_up,
        "a node behind reports catching_up false: {s:?}"
    );
}
