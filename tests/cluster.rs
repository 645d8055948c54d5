//! Real clusters: validator processes over loopback QUIC, checked over gRPC.
//! Named by scenario: n4 = four validators, f1 = one of them faulty.

mod common;

use std::time::Duration;

use common::Cluster;
use consort::config::read_key;

const LONG: Duration = Duration::from_secs(120);

async fn total_evidence(c: &Cluster, which: &[usize]) -> f64 {
    let mut total = 0.0;
    for &i in which {
        total += c.metric(i, "consort_evidence_total").await.unwrap_or(0.0);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_reach_height_20_with_identical_blocks() {
    let mut c = Cluster::generate(4, 0, 0);
    c.start_all();
    let ok = c.wait_height(&[0, 1, 2, 3], 20, LONG).await;
    assert!(ok, "not every node reached height 20\n{}", c.logs());
    c.assert_same_chain(&[0, 1, 2, 3], 1, 20).await;
    assert_eq!(total_evidence(&c, &[0, 1, 2, 3]).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4f1_kill9_then_restart_catches_up_and_votes_again() {
    let mut c = Cluster::generate(4, 0, 1);
    c.start_all();
    assert!(
        c.wait_height(&[0, 1, 2, 3], 5, LONG).await,
        "start\n{}",
        c.logs()
    );

    c.kill(3);
    let h0 = c.height(0).await.expect("height");
    assert!(
        c.wait_height(&[0, 1, 2], h0 + 15, LONG).await,
        "the other three stopped committing without node 3\n{}",
        c.logs()
    );

    c.start(3);
    let target = c.height(0).await.expect("height") + 5;
    assert!(
        c.wait_height(&[0, 1, 2, 3], target, LONG).await,
        "node 3 did not catch up\n{}",
        c.logs()
    );

    // Votes again: its precommit appears in a commit of a height decided after it
    // came back.
    let key3 = read_key(&c.home(3).join("node_key.json"))
        .expect("key")
        .public();
    let cl = c.client(0).await.expect("client");
    let deadline = tokio::time::Instant::now() + LONG;
    let mut voted = false;
    while !voted && tokio::time::Instant::now() < deadline {
        let latest = cl.status().await.expect("status").height;
        let commit = cl.commit(latest).await.expect("commit");
        voted = latest > target && commit.signatures.iter().any(|s| s.validator == key3);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        voted,
        "node 3 never signed a commit after restarting\n{}",
        c.logs()
    );

    let latest = c.height(0).await.expect("height");
    c.assert_same_chain(&[0, 1, 2, 3], 1, latest.min(c.height(3).await.unwrap_or(0)))
        .await;
    // No validator signed two conflicting votes: nobody saw an equivocation.
    assert_eq!(total_evidence(&c, &[0, 1, 2, 3]).await, 0.0, "{}", c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_two_down_halts_then_resumes() {
    let mut c = Cluster::generate(4, 0, 2);
    c.start_all();
    assert!(
        c.wait_height(&[0, 1, 2, 3], 3, LONG).await,
        "start\n{}",
        c.logs()
    );

    c.kill(2);
    c.kill(3);
    // A height already precommitted by three may still complete; then nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let h1 = c.height(0).await.expect("height");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let h2 = c.height(0).await.expect("height");
    let h2b = c.height(1).await.expect("height");
    assert_eq!(
        h1, h2,
        "two of four validators committed a block on their own"
    );
    assert!(h2b <= h2 + 1 && h2 <= h2b + 1);

    c.start(2);
    c.start(3);
    assert!(
        c.wait_height(&[0, 1, 2, 3], h2 + 5, LONG).await,
        "commits did not resume\n{}",
        c.logs()
    );
    c.assert_same_chain(&[0, 1, 2, 3], 1, h2 + 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpermitted_node_cannot_connect_and_learns_nothing() {
    let mut c = Cluster::generate(4, 0, 3);
    // A fifth home with its own key, pointed at the validators but not permitted
    // by them.
    let rogue = Cluster::generate_with(1, 0, 4, |_| {});
    let rogue_home = rogue.home(0).to_path_buf();
    let genesis = std::fs::read(c.home(0).join("genesis.json")).expect("genesis");
    std::fs::write(rogue_home.join("genesis.json"), genesis).expect("write genesis");
    let cfg_path = rogue_home.join("config.toml");
    let mut cfg = consort::config::NodeConfig::load(&cfg_path).expect("config");
    cfg.p2p.peers = c
        .nodes
        .iter()
        .map(|n| format!("{}@{}", n.key, n.p2p))
        .collect();
    std::fs::write(&cfg_path, cfg.to_commented_toml()).expect("write config");
    let rogue_key = read_key(&rogue_home.join("node_key.json"))
        .expect("key")
        .public();

    c.start_all();
    let mut rogue = rogue;
    rogue.start(0);
    assert!(c.wait_height(&[0, 1, 2, 3], 5, LONG).await, "{}", c.logs());
    tokio::time::sleep(Duration::from_secs(3)).await;

    let status = rogue
        .client(0)
        .await
        .expect("rogue client")
        .status()
        .await
        .expect("status");
    assert_eq!(status.height, 0, "the rogue node learned blocks");
    assert!(
        status.peers.iter().all(|p| !p.connected),
        "the rogue node connected: {:?}",
        status.peers
    );
    for i in 0..4 {
        let s = c
            .client(i)
            .await
            .expect("client")
            .status()
            .await
            .expect("status");
        assert!(
            s.peers
                .iter()
                .all(|p| p.public_key.as_ref() != rogue_key.as_bytes()),
            "validator {i} lists the rogue node as a peer"
        );
    }
}
