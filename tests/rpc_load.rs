//! Serving clients does not hold back consensus: a real cluster keeps
//! committing while clients hammer what the nodes serve from disk (snapshot
//! chunks, block ranges) and open connections in a loop, and one client
//! address gets no more than its share of connections and streams.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;
use consort::bench::hammer::{Hammer, HammerSpec};
use consort::client::Client;
use consort::pb;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SLOT: u16 = 17;
const LONG: Duration = Duration::from_secs(180);
/// How long the clients hammer the nodes.
const WINDOW: Duration = Duration::from_secs(20);
/// The longest a height may take under the hammer. Generous: the test runs on
/// a shared 2-core machine; a stalled node takes tens of seconds.
const MAX_GAP_MS: u64 = 5_000;

/// Records (height, header time) of every block node `c` streams, from `from`.
async fn follow(c: Client, from: u64, out: Arc<Mutex<Vec<(u64, u64)>>>) {
    let Ok(mut s) = c.stream_blocks(from).await else {
        return;
    };
    while let Ok(Some(b)) = s.message().await {
        if let Some(h) = b.block.and_then(|b| b.header) {
            out.lock().unwrap().push((h.height, h.time_ms));
        }
    }
}

/// The newest snapshot node `addr` lists, with its number of chunks.
async fn newest_snapshot(addr: &str) -> Option<(u64, u32)> {
    let c = Client::connect(addr).await.ok()?;
    let mut s = pb::sync_service_client::SyncServiceClient::new(c.channel());
    let r = s.list_snapshots(pb::ListSnapshotsRequest {}).await.ok()?;
    r.into_inner()
        .snapshots
        .iter()
        .max_by_key(|s| s.height)
        .map(|s| (s.height, s.chunks))
}

/// A TCP connection to `to` from the loopback address `from` that has sent
/// the HTTP/2 preface: a served one gets the server's settings, a refused one
/// is closed.
async fn raw_connection(from: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::from((from, 0))).expect("bind");
    let mut c = s.connect(to).await.expect("connect");
    let _ = c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    c
}

/// Whether the server serves `c` (answers) rather than closing it.
async fn served(c: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf)).await {
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
        Err(_) => panic!("the server neither served nor closed a connection within 10 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consensus_keeps_its_pace_while_clients_hammer_the_disk() {
    // A state of 50,000 accounts: snapshots of a few chunks of 1 MiB.
    let mut c = Cluster::generate_with(4, 0, SLOT, |s| s.extra_accounts = 50_000);
    for i in 0..4 {
        c.edit_config(i, |cfg| {
            cfg.sync.snapshot_interval = 200;
            cfg.sync.snapshot_keep = 2;
            cfg.sync.chunk_bytes = 1024 * 1024;
        });
    }
    let limits = consort::config::NodeConfig::load(&c.home(0).join("config.toml"))
        .expect("config")
        .rpc;
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.grpc.clone()).collect();
    let deadline = Instant::now() + LONG;
    for a in &addrs {
        loop {
            if newest_snapshot(a).await.is_some_and(|(_, n)| n >= 2) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot on {a}\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The chain under the hammer.
    let observer = c.client(0).await.expect("client");
    let from = observer.status().await.expect("status").height + 1;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let following = tokio::spawn(follow(observer, from, seen.clone()));
    let hammer = Hammer::start(
        &addrs,
        &HammerSpec {
            chunk_tasks: 2,
            range_tasks: 2,
            range_blocks: 500,
            connect_tasks: 1,
        },
    );
    tokio::time::sleep(WINDOW).await;
    let counts = hammer.stop().await;
    following.abort();
    let seen = seen.lock().unwrap().clone();
    let rates = counts.rates(WINDOW.as_secs_f64());
    let gaps: Vec<u64> = seen
        .windows(2)
        .filter(|w| w[1].0 == w[0].0 + 1)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .collect();
    let max_gap = gaps.iter().copied().max().unwrap_or(u64::MAX);
    eprintln!(
        "under the hammer: {} heights in {}s, largest gap {max_gap} ms; served {:.1} chunks/s \
         ({:.1} MiB/s), {:.0} blocks/s, {:.1} connections/s, {} refused, {} errors",
        seen.len(),
        WINDOW.as_secs(),
        rates.chunks_per_s,
        rates.chunk_mib_per_s,
        rates.blocks_per_s,
        rates.connections_per_s,
        rates.refused,
        rates.errors
    );
    assert!(
        rates.chunks_per_s > 0.0 && rates.blocks_per_s > 0.0,
        "the hammer got nothing served: {rates:?}"
    );
    assert!(
        seen.len() >= 20,
        "only {} heights committed in {}s under the hammer\n{}",
        seen.len(),
        WINDOW.as_secs(),
        c.logs()
    );
    assert!(
        max_gap < MAX_GAP_MS,
        "a height took {max_gap} ms under the hammer\n{}",
        c.logs()
    );

    // One address gets its share of connections, no more; others still get
    // theirs.
    let node1: SocketAddr = c.nodes[1].grpc.parse().expect("address");
    let per_address = limits.max_connections_per_address;
    let mut conns = Vec::new();
    for _ in 0..per_address + 4 {
        conns.push(raw_connection([127, 0, 0, 2], node1).await);
    }
    let verdicts = futures::future::join_all(conns.iter_mut().map(served)).await;
    let held = verdicts.iter().filter(|s| **s).count();
    assert_eq!(
        held,
        per_address,
        "{held} of {} connections from one address served",
        per_address + 4
    );
    let mut other = raw_connection([127, 0, 0, 3], node1).await;
    assert!(served(&mut other).await, "another address is refused too");
    let log = c.log_of(1);
    assert!(
        log.contains("too many gRPC connections from this address") && log.contains("127.0.0.2"),
        "no log line names the refused address"
    );
    // Closing them makes room again.
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut again = raw_connection([127, 0, 0, 2], node1).await;
        if served(&mut again).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections are not given back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // And its share of streams: subscriptions beyond it are refused with
    // RESOURCE_EXHAUSTED. The hammer's streams from this address end as
    // their connections close, hence the retries.
    let per_address = limits.max_streams_per_address;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sub = c.client(2).await.expect("client");
        let mut open = Vec::new();
        let mut refused = 0;
        for _ in 0..per_address + 3 {
            match sub.stream_blocks(0).await {
                Ok(s) => open.push(s),
                Err(consort::client::ClientError::Status(s))
                    if s.code() == tonic::Code::ResourceExhausted =>
                {
                    assert!(s.message().contains("127.0.0.1"), "{}", s.message());
                    refused += 1;
                }
                Err(e) => panic!("subscription failed: {e}"),
            }
        }
        if open.len() == per_address && refused == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} subscriptions open and {refused} refused, {per_address} and 3 expected",
            open.len()
        );
        drop(open);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(c.wait_height(&[0, 1, 2, 3], from + 30, LONG).await);
}
