//! A permitted but hostile member peer, over real processes: what it can make
//! a validator do with well-formed messages. Block requests are served off the
//! consensus actor within a per-peer budget; blocks nobody asked for are
//! dropped; a next-height proposal signed by anyone but that round's proposer
//! takes no slot and costs its sender; and nothing it does gets an honest peer
//! banned.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Cluster;
use consort::config::{Home, read_key};
use consort::net::raw::RawPeer;
use consort::net::wire::encode_frame;
use consort::net::{Channel, NetMessage};
use consort::types::{Height, Proposal, Round, Timestamp};

const LONG: Duration = Duration::from_secs(180);
const CHAIN: &str = "consort-test";
/// The validator the hostile member talks to.
const TARGET: usize = 0;
/// The member's index among the cluster's nodes (never started: its key is
/// the hostile peer's).
const MEMBER: usize = 4;

fn frame(msg: &NetMessage) -> Vec<u8> {
    encode_frame(msg).expect("encode").to_vec()
}

/// Watches node `i`'s height until `stop`; returns the longest time it stood
/// still and how far it moved.
async fn watch_height(c: &Cluster, i: usize, stop: Arc<AtomicBool>) -> (Duration, u64) {
    let first = c.height(i).await.unwrap_or(0);
    let (mut last, mut since) = (first, Instant::now());
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        if let Some(h) = c.height(i).await {
            if h != last {
                last = h;
                since = Instant::now();
            }
        }
        longest = longest.max(since.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (longest, last.saturating_sub(first))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_member_cannot_stall_or_steer_the_validators() {
    let mut c = Cluster::generate_with(4, 1, 28, |s| s.clients = 1);
    for i in 0..4 {
        c.start(i);
    }
    assert!(c.wait_height(&[0, 1, 2, 3], 5, LONG).await, "{}", c.logs());
    let member = read_key(&Home::new(&c.nodes[MEMBER].home).node_key()).expect("member key");
    let target = c.nodes[TARGET].key;
    let addr: SocketAddr = c.nodes[TARGET].p2p.parse().expect("address");
    let mut peer = RawPeer::connect(&member, target, addr)
        .await
        .expect("connect as the member");

    // 1. Requests for every stored block, over and over, at 800 a second
    //    (under the block channel's rate, so they all reach the node) for ten
    //    seconds: the chain keeps its pace meanwhile.
    let stored = c.height(TARGET).await.expect("height");
    let stop = Arc::new(AtomicBool::new(false));
    let watching = {
        let stop = stop.clone();
        let c = &c;
        async move { watch_height(c, TARGET, stop).await }
    };
    let flooding = async {
        let started = Instant::now();
        let mut h = 0u64;
        while started.elapsed() < Duration::from_secs(10) {
            for _ in 0..80 {
                h = h % stored + 1;
                peer.write(Channel::Block, &frame(&NetMessage::BlockRequest(Height(h))))
                    .await
                    .expect("write a block request");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::Relaxed);
    };
    let ((longest_still, moved), ()) = tokio::join!(watching, flooding);
    println!("under block requests: {moved} heights, longest pause {longest_still:?}");
    assert!(moved >= 10, "only {moved} heights in 10 s\n{}", c.logs());
    assert!(
        longest_still < Duration::from_secs(8),
        "the chain stood still for {longest_still:?}\n{}",
        c.logs()
    );

    // 2. Blocks nobody asked for, above the tip (a stored block relabelled,
    //    with a commit naming it whose signatures are for another block).
    //    Dropped unread: nothing buffered, and nothing to judge the sender by.
    let cl = c.client(TARGET).await.expect("client");
    let tip = cl.status().await.expect("status").height;
    let (block, _) = cl.block(tip).await.expect("block");
    let commit = cl.commit(tip).await.expect("commit");
    for k in 1..=64u64 {
        let mut b = block.clone();
        b.header.height = Height(tip + k);
        let mut forged = commit.clone();
        forged.height = b.header.height;
        forged.block_id = b.id();
        let msg = NetMessage::Decided {
            block: Arc::new(b),
            commit: forged,
        };
        peer.write(Channel::Block, &frame(&msg))
            .await
            .expect("write a block");
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(3), peer.closed())
            .await
            .is_err(),
        "the member was cut off for blocks the node never asked for\n{}",
        c.log_of(TARGET)
    );

    // 3. Proposals for this height and the next ones, signed by the member:
    //    no slot for them, and the member is cut off.
    let now = cl.status().await.expect("status").height + 1;
    for dh in 0..3u64 {
        for r in 0..3u32 {
            let mut b = block.clone();
            b.header.height = Height(now + dh);
            let p = Proposal::new_signed(
                &member,
                CHAIN,
                Height(now + dh),
                Round(r),
                None,
                b.id(),
                Timestamp(1),
            );
            let msg = NetMessage::Proposal {
                proposal: p,
                block: Arc::new(b),
            };
            if peer.write(Channel::Proposal, &frame(&msg)).await.is_err() {
                break;
            }
        }
    }
    let closed = tokio::time::timeout(Duration::from_secs(30), peer.closed()).await;
    let (_, reason) = closed.expect("the member was not cut off for its proposals");
    println!("member cut off: {reason}");
    assert!(
        reason.contains("not its round's proposer"),
        "{reason}\n{}",
        c.log_of(TARGET)
    );

    // The chain goes on, and no honest node was banned by anyone.
    let h = c.height(TARGET).await.expect("height");
    assert!(
        c.wait_height(&[0, 1, 2, 3], h + 5, LONG).await,
        "{}",
        c.logs()
    );
    // The target banned the member (once, or again for proposals still
    // queued when it did), and nobody else.
    let bans: Vec<String> = c
        .log_of(TARGET)
        .lines()
        .filter(|l| l.contains("banning peer"))
        .map(str::to_string)
        .collect();
    assert!(!bans.is_empty(), "{}", c.log_of(TARGET));
    let member_key = member.public().to_hex();
    for l in &bans {
        assert!(l.contains(&member_key), "an honest peer banned: {l}");
    }
    for i in 1..4 {
        assert_eq!(
            c.metric(i, "consort_peers_banned_total").await,
            Some(0.0),
            "node {i} banned a peer\n{}",
            c.logs()
        );
    }
}
