//! Real QUIC over loopback: mesh, permissions, bad frames, channel isolation.
//! Waits are generous and nothing asserts on timing, so that a loaded machine
//! only makes the tests slower.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Endpoint, SendStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

use super::peer::{close_code, stream_header};
use super::tls::{Identity, PeerGate, SERVER_NAME};
use super::*;
mod flood;

use crate::types::{
    Block, Commit, Hash, Header, Height, Keypair, Proposal, Round, Timestamp, Vote, VoteType,
};

const WAIT: Duration = Duration::from_secs(60);

type Inbox = mpsc::Receiver<(PublicKey, NetMessage)>;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn key(i: u8) -> Keypair {
    Keypair::from_seed([i; 32])
}

/// Faster re-dials than the defaults, so that tests do not idle.
fn tuning() -> NetTuning {
    NetTuning {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        duplicate_grace: Duration::from_secs(1),
        ..NetTuning::default()
    }
}

/// A loopback address with a port that was free a moment ago (for nodes that
/// must know each other's address before they start).
fn free_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

fn config(
    k: &Keypair,
    listen: SocketAddr,
    permitted: &[PublicKey],
    peers: Vec<PeerAddr>,
) -> NetConfig {
    NetConfig {
        listen,
        key: k.clone(),
        permitted: permitted.iter().copied().collect(),
        peers,
        max_frame: ChannelLimits::default(),
        queue_len: 1024,
    }
}

/// Starts a node, retrying while its port is still held by a node that just
/// shut down.
async fn start(cfg: NetConfig, tuning: NetTuning) -> (Network, NetEvents) {
    let deadline = Instant::now() + WAIT;
    loop {
        match Network::start_with(cfg.clone(), tuning.clone()).await {
            Ok(started) => return started,
            Err(NetError::Bind { .. }) if Instant::now() < deadline => {
                sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("cannot start: {e}"),
        }
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let waited = timeout(WAIT, async {
        while !cond() {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

async fn recv(rx: &mut Inbox, what: &str) -> (PublicKey, NetMessage) {
    match timeout(WAIT, rx.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => panic!("{what}: channel closed"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn next_event(rx: &mut mpsc::Receiver<PeerEvent>) -> PeerEvent {
    match timeout(WAIT, rx.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("peer events closed"),
        Err(_) => panic!("timed out waiting for a peer event"),
    }
}

async fn wait_disconnected(rx: &mut mpsc::Receiver<PeerEvent>, who: PublicKey) -> String {
    loop {
        if let PeerEvent::Disconnected { peer, reason } = next_event(rx).await {
            if peer == who {
                return reason;
            }
        }
    }
}

fn inbox(ev: &mut NetEvents, ch: Channel) -> &mut Inbox {
    match ch {
        Channel::Consensus => &mut ev.consensus,
        Channel::Proposal => &mut ev.proposals,
        Channel::Block => &mut ev.blocks,
        Channel::Mempool => &mut ev.mempool,
    }
}

fn vote(k: &Keypair, round: u32) -> NetMessage {
    NetMessage::Vote(Vote::new_signed(
        k,
        "test",
        VoteType::Prevote,
        Height(1),
        Round(round),
        None,
        Timestamp(0),
    ))
}

fn block(k: &Keypair, txs: Vec<Bytes>) -> Block {
    Block {
        header: Header {
            chain_id: "test".into(),
            height: Height(2),
            time: Timestamp(1),
            last_block_id: Some(Hash::digest(b"prev")),
            last_commit_hash: Hash::ZERO,
            data_hash: Block::data_hash_of(&txs),
            app_hash: Hash::ZERO,
            validators_hash: Hash::ZERO,
            evidence_hash: Block::evidence_hash_of(&[]),
            proposer: k.public(),
        },
        txs,
        last_commit: None,
        evidence: vec![],
    }
}

/// One message of every kind.
fn samples(k: &Keypair) -> Vec<NetMessage> {
    let b = Arc::new(block(k, vec![Bytes::from_static(b"tx")]));
    let precommit = Vote::new_signed(
        k,
        "test",
        VoteType::Precommit,
        Height(2),
        Round(0),
        Some(b.id()),
        Timestamp(3),
    );
    vec![
        vote(k, 0),
        NetMessage::Status(RoundStatus {
            height: Height(2),
            round: Round(0),
            step: 1,
            prevotes: vec![0b11],
            precommits: vec![],
            has_proposal: true,
            base_height: Height(1),
        }),
        NetMessage::Proposal {
            proposal: Proposal::new_signed(
                k,
                "test",
                Height(2),
                Round(0),
                None,
                b.id(),
                Timestamp(2),
            ),
            block: b.clone(),
        },
        NetMessage::Decided {
            block: b.clone(),
            commit: Commit::from_precommits(Height(2), Round(0), b.id(), &[precommit]),
        },
        NetMessage::BlockRequest(Height(1)),
        NetMessage::Txs(vec![Bytes::from_static(b"t1"), Bytes::from_static(b"t2")]),
    ]
}

fn others(keys: &[Keypair], addrs: &[SocketAddr], me: usize) -> Vec<PeerAddr> {
    keys.iter()
        .zip(addrs)
        .enumerate()
        .filter(|(j, _)| *j != me)
        .map(|(_, (k, a))| PeerAddr {
            key: k.public(),
            addr: a.to_string(),
        })
        .collect()
}

async fn wait_mesh(nodes: &[(Network, NetEvents)]) {
    let n = nodes.len();
    let nets: Vec<Network> = nodes.iter().map(|(net, _)| net.clone()).collect();
    wait_until("a full mesh", || {
        nets.iter().all(|net| net.connected_peers().len() == n - 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_delivers_on_each_channel_and_reconnects_after_restart() {
    init_tracing();
    let keys: Vec<Keypair> = (1..=4).map(key).collect();
    let permitted: Vec<PublicKey> = keys.iter().map(Keypair::public).collect();
    let addrs: Vec<SocketAddr> = (0..4).map(|_| free_addr()).collect();
    let mut nodes = Vec::new();
    // Everyone dials everyone: simultaneous dials must settle on one connection.
    for i in 0..4 {
        let cfg = config(&keys[i], addrs[i], &permitted, others(&keys, &addrs, i));
        nodes.push(start(cfg, tuning()).await);
    }
    wait_mesh(&nodes).await;

    // Each node was told of each other node.
    for (i, (_, ev)) in nodes.iter_mut().enumerate() {
        let want: HashSet<PublicKey> = others(&keys, &addrs, i).iter().map(|p| p.key).collect();
        let mut seen = HashSet::new();
        while seen != want {
            if let PeerEvent::Connected { peer, .. } = next_event(&mut ev.peers).await {
                seen.insert(peer);
            }
        }
    }

    // A broadcast reaches every other node, each message on its channel, in order.
    let msgs = samples(&keys[0]);
    for m in &msgs {
        nodes[0].0.broadcast(m.clone());
    }
    for (_, ev) in nodes.iter_mut().skip(1) {
        for m in &msgs {
            let (from, got) = recv(inbox(ev, m.channel()), m.kind()).await;
            assert_eq!(from, keys[0].public());
            assert_eq!(&got, m);
        }
    }

    // A send reaches only its peer: node 3's next vote from node 1 is the broadcast.
    let direct = vote(&keys[1], 7);
    let to_all = vote(&keys[1], 8);
    nodes[1].0.send(&keys[2].public(), direct.clone());
    nodes[1].0.broadcast(to_all.clone());
    // (Two messages may travel on two connections while a duplicate drains, so
    // node 2 may get them in either order.)
    let mut got = vec![
        recv(&mut nodes[2].1.consensus, "direct").await,
        recv(&mut nodes[2].1.consensus, "broadcast").await,
    ];
    got.sort_by_key(|(_, m)| matches!(m, NetMessage::Vote(v) if v.round == Round(8)));
    assert_eq!(
        got,
        vec![
            (keys[1].public(), direct),
            (keys[1].public(), to_all.clone())
        ]
    );
    assert_eq!(recv(&mut nodes[3].1.consensus, "broadcast").await.1, to_all);
    assert_eq!(recv(&mut nodes[0].1.consensus, "broadcast").await.1, to_all);
    let stats = nodes[1].0.stats();
    assert!(stats.consensus.msgs_out >= 4);
    assert_eq!(stats.bad_frames, 0);

    // Node 3 stops: the others see it go.
    let (net3, ev3) = nodes.pop().unwrap();
    net3.shutdown().await;
    drop((net3, ev3));
    for (_, ev) in nodes.iter_mut() {
        wait_disconnected(&mut ev.peers, keys[3].public()).await;
    }

    // A new node with the same key on the same port rejoins the mesh.
    let cfg = config(&keys[3], addrs[3], &permitted, others(&keys, &addrs, 3));
    nodes.push(start(cfg, tuning()).await);
    wait_mesh(&nodes).await;
    let back = vote(&keys[3], 9);
    nodes[3].0.broadcast(back.clone());
    for (_, ev) in nodes.iter_mut().take(3) {
        assert_eq!(
            recv(&mut ev.consensus, "from restarted").await,
            (keys[3].public(), back.clone())
        );
    }
    let to_new = vote(&keys[0], 10);
    nodes[0].0.broadcast(to_new.clone());
    assert_eq!(
        recv(&mut nodes[3].1.consensus, "to restarted").await.1,
        to_new
    );

    for (net, _) in &nodes {
        net.shutdown().await;
    }
}

/// A client connection speaking our protocol by hand, to write raw bytes.
struct RawPeer {
    _endpoint: Endpoint,
    conn: quinn::Connection,
    streams: Vec<SendStream>,
}

async fn raw_connect(k: &Keypair, target: &Network) -> Result<RawPeer, Box<dyn std::error::Error>> {
    let id = Identity::new(k)?;
    let gate = Arc::new(PeerGate::new(
        k.public(),
        [target.local_key()].into_iter().collect(),
    ));
    let mut cfg = quinn::ClientConfig::new(Arc::new(tls::client_config(
        &id,
        gate,
        Some(target.local_key()),
    )?));
    cfg.transport_config(Arc::new(transport(&NetTuning::default())?));
    let endpoint = Endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = endpoint
        .connect_with(cfg, target.local_addr(), SERVER_NAME)?
        .await?;
    let mut streams = Vec::new();
    for ch in Channel::ALL {
        let mut s = conn.open_uni().await?;
        s.write_all(&stream_header(ch, 42)).await?;
        streams.push(s);
    }
    Ok(RawPeer {
        _endpoint: endpoint,
        conn,
        streams,
    })
}

async fn wait_connected(rx: &mut mpsc::Receiver<PeerEvent>, who: PublicKey) {
    loop {
        if let PeerEvent::Connected { peer, .. } = next_event(rx).await {
            if peer == who {
                return;
            }
        }
    }
}

/// Waits until `a` and `b` both list each other: each side registers the
/// connection on its own, so one side's event does not mean the other can send.
async fn wait_pair(a: &Network, b: &Network) {
    let (ka, kb) = (a.local_key(), b.local_key());
    wait_until("both sides connected", || {
        a.connected_peers().iter().any(|p| p.0 == kb)
            && b.connected_peers().iter().any(|p| p.0 == ka)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpermitted_key_is_refused_during_the_handshake() {
    init_tracing();
    let (a, b, x) = (key(11), key(12), key(13));
    let permitted = [a.public(), b.public()];
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let peer = |k: &Keypair, addr: SocketAddr| PeerAddr {
        key: k.public(),
        addr: addr.to_string(),
    };
    let (na, mut ea) = start(
        config(&a, a_addr, &permitted, vec![peer(&b, b_addr)]),
        tuning(),
    )
    .await;
    let (nb, mut eb) = start(
        config(&b, b_addr, &permitted, vec![peer(&a, a_addr)]),
        tuning(),
    )
    .await;
    // The outsider would accept them and keeps dialing both.
    let (nx, mut ex) = start(
        config(
            &x,
            free_addr(),
            &[a.public(), b.public(), x.public()],
            vec![peer(&a, a_addr), peer(&b, b_addr)],
        ),
        tuning(),
    )
    .await;
    wait_until("A and B connected and both refusing X", || {
        na.connected_peers().len() == 1
            && nb.connected_peers().len() == 1
            && na.stats().refused_handshakes >= 1
            && nb.stats().refused_handshakes >= 1
    })
    .await;

    // The other direction: A's verifier refuses X's certificate as a server.
    let before = na.stats().refused_handshakes;
    let mut cfg = quinn::ClientConfig::new(Arc::new(
        tls::client_config(&Identity::new(&a).unwrap(), na.inner.gate.clone(), None).unwrap(),
    ));
    cfg.transport_config(Arc::new(transport(&NetTuning::default()).unwrap()));
    let probe = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let dialed = probe
        .connect_with(cfg, nx.local_addr(), SERVER_NAME)
        .unwrap()
        .await;
    assert!(dialed.is_err(), "A completed a handshake with X");
    assert!(na.stats().refused_handshakes > before);

    // Traffic between A and B flows; X gets none of it and never connected.
    let m = vote(&a, 1);
    na.broadcast(m.clone());
    assert_eq!(recv(&mut eb.consensus, "vote").await.1, m);
    assert!(nx.connected_peers().is_empty());
    assert_eq!(nx.stats().connects, 0);
    assert!(ex.consensus.try_recv().is_err());
    assert!(ex.peers.try_recv().is_err());
    for ev in [&mut ea, &mut eb] {
        while let Ok(e) = ev.peers.try_recv() {
            if let PeerEvent::Connected { peer, .. } = e {
                assert_ne!(
                    peer,
                    x.public(),
                    "a permitted node saw the outsider connect"
                );
            }
        }
    }
    for net in [&na, &nb, &nx] {
        net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_that_peer() {
    init_tracing();
    let (a, b, r1, r2) = (key(21), key(22), key(23), key(24));
    let permitted = [a.public(), b.public(), r1.public(), r2.public()];
    let a_addr = free_addr();
    let (na, mut ea) = start(config(&a, a_addr, &permitted, vec![]), tuning()).await;
    let to_a = vec![PeerAddr {
        key: a.public(),
        addr: a_addr.to_string(),
    }];
    let (nb, mut eb) = start(config(&b, free_addr(), &permitted, to_a), tuning()).await;
    wait_connected(&mut ea.peers, b.public()).await;
    wait_pair(&na, &nb).await;

    // An oversized frame on the consensus stream: only the length prefix is sent.
    let mut raw = raw_connect(&r1, &na).await.unwrap();
    wait_connected(&mut ea.peers, r1.public()).await;
    let too_big = (ChannelLimits::default().consensus as u32 + 1).to_be_bytes();
    raw.streams[Channel::Consensus.index()]
        .write_all(&too_big)
        .await
        .unwrap();
    let reason = wait_disconnected(&mut ea.peers, r1.public()).await;
    assert!(reason.contains("exceeds"), "{reason}");
    match timeout(WAIT, raw.conn.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, close_code::PROTOCOL)
        }
        other => panic!("unexpected close: {other}"),
    }
    assert_eq!(na.stats().bad_frames, 1);

    // An undecodable frame on the mempool stream.
    let mut raw2 = raw_connect(&r2, &na).await.unwrap();
    wait_connected(&mut ea.peers, r2.public()).await;
    raw2.streams[Channel::Mempool.index()]
        .write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let reason = wait_disconnected(&mut ea.peers, r2.public()).await;
    assert!(reason.contains("undecodable"), "{reason}");
    assert_eq!(na.stats().bad_frames, 2);

    // The offender is refused for a while.
    let refused = na.stats().refused_handshakes;
    let _ = raw_connect(&r1, &na).await;
    wait_until("the banned peer to be refused", || {
        na.stats().refused_handshakes > refused
    })
    .await;

    // A keeps working with B, in both directions.
    assert_eq!(
        na.connected_peers().iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![b.public()]
    );
    let m = vote(&b, 3);
    nb.send(&a.public(), m.clone());
    assert_eq!(
        recv(&mut ea.consensus, "vote from B").await,
        (b.public(), m)
    );
    let m = vote(&a, 4);
    na.send(&b.public(), m.clone());
    assert_eq!(
        recv(&mut eb.consensus, "vote from A").await,
        (a.public(), m)
    );
    assert!(na.connected_peers().iter().all(|(k, _)| *k == b.public()));

    na.shutdown().await;
    nb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mempool_flood_does_not_block_consensus() {
    init_tracing();
    let (a, b) = (key(31), key(32));
    let permitted = [a.public(), b.public()];
    let b_addr = free_addr();
    let mut slow = tuning();
    slow.inbound_len.mempool = 4;
    let (nb, mut eb) = start(config(&b, b_addr, &permitted, vec![]), slow).await;
    let mut cfg = config(
        &a,
        free_addr(),
        &permitted,
        vec![PeerAddr {
            key: b.public(),
            addr: b_addr.to_string(),
        }],
    );
    cfg.queue_len = 64;
    let (na, _ea) = start(cfg, tuning()).await;
    wait_connected(&mut eb.peers, a.public()).await;
    wait_pair(&na, &nb).await;

    // 10 MiB of transactions, paced so that A's writer keeps up and fills the
    // stream's 4 MiB flow-control window; B never reads its mempool queue. Votes
    // are sent all along, most of them while the mempool stream is blocked.
    let tx = Bytes::from(vec![7u8; 1024]);
    let mut votes = Vec::new();
    for i in 0..10_000u32 {
        na.send(&b.public(), NetMessage::Txs(vec![tx.clone()]));
        if i % 100 == 0 {
            let v = vote(&a, i / 100);
            na.send(&b.public(), v.clone());
            votes.push(v);
        }
        if i % 32 == 0 {
            sleep(Duration::from_millis(1)).await;
        }
    }
    for v in &votes {
        assert_eq!(&recv(&mut eb.consensus, "vote during flood").await.1, v);
    }
    // Whatever the timing, 10 MiB cannot fit in B's 4 MiB window and queues.
    let sa = na.stats();
    assert!(sa.mempool.dropped > 0, "the flood was never pushed back");
    assert_eq!(sa.consensus.dropped, 0);
    assert!(eb.mempool.len() <= 4);

    // Once B reads again, transactions flow.
    let (from, got) = recv(&mut eb.mempool, "transactions").await;
    assert_eq!(from, a.public());
    assert_eq!(got, NetMessage::Txs(vec![tx]));

    na.shutdown().await;
    nb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_outbound_message_is_not_sent() {
    init_tracing();
    let (a, b) = (key(41), key(42));
    let permitted = [a.public(), b.public()];
    let b_addr = free_addr();
    let (nb, mut eb) = start(config(&b, b_addr, &permitted, vec![]), tuning()).await;
    let mut cfg = config(
        &a,
        free_addr(),
        &permitted,
        vec![PeerAddr {
            key: b.public(),
            addr: b_addr.to_string(),
        }],
    );
    cfg.max_frame.mempool = 1024;
    let (na, _ea) = start(cfg, tuning()).await;
    wait_connected(&mut eb.peers, a.public()).await;
    wait_pair(&na, &nb).await;

    na.send(
        &b.public(),
        NetMessage::Txs(vec![Bytes::from(vec![1u8; 2048])]),
    );
    let small = NetMessage::Txs(vec![Bytes::from_static(b"ok")]);
    na.send(&b.public(), small.clone());
    assert_eq!(recv(&mut eb.mempool, "small txs").await.1, small);
    assert_eq!(na.stats().mempool.oversized, 1);
    assert_eq!(nb.stats().bad_frames, 0);
    na.shutdown().await;
    nb.shutdown().await;
}

/// Loopback figures: `cargo test --lib net::tests::bench -- --ignored --nocapture`
/// (add `--release` for optimized figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_loopback() {
    let (a, b) = (key(51), key(52));
    let permitted = [a.public(), b.public()];
    let b_addr = free_addr();
    let mut big = tuning();
    big.inbound_len = ChannelLimits::uniform(1 << 16);
    let mut cfg_b = config(&b, b_addr, &permitted, vec![]);
    cfg_b.queue_len = 1 << 20;
    let (nb, mut eb) = start(cfg_b, big.clone()).await;
    let mut cfg_a = config(
        &a,
        free_addr(),
        &permitted,
        vec![PeerAddr {
            key: b.public(),
            addr: b_addr.to_string(),
        }],
    );
    cfg_a.queue_len = 1 << 20;
    let (na, mut ea) = start(cfg_a, big).await;
    wait_connected(&mut eb.peers, a.public()).await;
    wait_pair(&na, &nb).await;

    // Round trip of a vote: A -> B -> A.
    let rounds = 2000u32;
    let v = vote(&a, 1);
    let t = Instant::now();
    for _ in 0..rounds {
        na.send(&b.public(), v.clone());
        let (_, m) = recv(&mut eb.consensus, "ping").await;
        nb.send(&a.public(), m);
        recv(&mut ea.consensus, "pong").await;
    }
    let rtt = t.elapsed() / rounds;
    println!("vote round trip: {rtt:?} mean over {rounds}");

    // One-way vote throughput (signed beforehand).
    let n = 100_000u32;
    let signed: Vec<NetMessage> = (0..n).map(|r| vote(&a, r)).collect();
    let t = Instant::now();
    for v in signed {
        na.send(&b.public(), v);
    }
    for _ in 0..n {
        recv(&mut eb.consensus, "vote").await;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "votes one way: {:.0} msgs/s ({n} in {secs:.2}s)",
        f64::from(n) / secs
    );

    // Bulk: 1 MiB mempool frames.
    let chunk = Bytes::from(vec![3u8; 1 << 20]);
    let n = 200u32;
    let t = Instant::now();
    for _ in 0..n {
        na.send(&b.public(), NetMessage::Txs(vec![chunk.clone()]));
    }
    for _ in 0..n {
        recv(&mut eb.mempool, "bulk").await;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "bulk: {:.0} MiB/s ({n} MiB in {secs:.2}s)",
        f64::from(n) / secs
    );
    println!("dropped: {}", na.stats().dropped());
    na.shutdown().await;
    nb.shutdown().await;
}
