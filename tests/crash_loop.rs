//! The crash loop: four validator processes under a load of transactions
//! submitted in COMMITTED mode, and 50 cycles of kill -9 on a random validator
//! followed by its restart. At the end:
//!
//! - 0 lost: every transaction a node reported committed is in the chain, at
//!   the height and index reported, on every node;
//! - 0 forks: every node has the same block id at every height;
//! - 0 double signs: among every vote the nodes hold (the commits of every
//!   height, the write-ahead logs and the signing states of all four), no
//!   validator signed two different votes for one height, round and type; no
//!   node detected an equivocation, and no block carries evidence.
//!
//! Not part of `cargo test` (it runs for several minutes):
//!
//! ```sh
//! cargo test --release --test crash_loop -- --ignored --nocapture
//! CONSORT_CRASH_CYCLES=10 CONSORT_CRASH_SEED=7 cargo test --release --test crash_loop -- --ignored --nocapture
//! ```
//!
//! The last line printed is the result:
//! `crash loop: <cycles> kills, <n> txs committed, <l> lost, <f> forks, <d> double signs, height <h>`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;
use consort::app::ledger::{Action, Tx};
use consort::client::Client;
use consort::codec::Wire;
use consort::config::{Home, read_key};
use consort::pb;
use consort::pb::sync_service_client::SyncServiceClient;
use consort::rpc::MAX_RANGE;
use consort::storage::{BlockStore, SledStore};
use consort::types::{Block, BlockId, Hash, Height, Keypair, PublicKey, Round, Vote, VoteType};
use tokio::sync::Mutex;

const CHAIN: &str = "consort-test";
const VALIDATORS: usize = 4;
const CLIENTS: usize = 4;
const LONG: Duration = Duration::from_secs(240);

/// A small deterministic generator, so a run replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A transaction some node answered COMMITTED for.
#[derive(Clone, Debug)]
struct Committed {
    hash: Hash,
    height: u64,
    index: u32,
}

/// One client: transfers in nonce order, each submitted in COMMITTED mode to a
/// node, retried (the same bytes) on another node when the answer is not a
/// commit. Only OK answers count as "reported committed".
async fn client_loop(
    grpc: Vec<String>,
    key: Keypair,
    to: PublicKey,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Committed>>>,
    mut rng: Rng,
) {
    let mut nonce = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let tx = Bytes::from(
            Tx::new_signed(&key, CHAIN, nonce, Action::Transfer { to, amount: 1 }).encode(),
        );
        let hash = Hash::digest(&tx);
        let mut done = false;
        while !done && !stop.load(Ordering::Relaxed) {
            let node = &grpc[rng.below(grpc.len() as u64) as usize];
            let Ok(cl) = Client::connect(node).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            match cl.submit(tx.clone(), true).await {
                Ok(r) => {
                    out.lock().await.push(Committed {
                        hash,
                        height: r.height,
                        index: r.index,
                    });
                    done = true;
                }
                Err(_) => {
                    // Committed meanwhile (the answer was lost with a killed
                    // node)? Then the next nonce; otherwise send it again.
                    if let Ok(t) = cl.get_tx(&hash).await {
                        let _ = t;
                        done = true;
                    } else {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        }
        nonce += 1;
    }
}

/// Every vote a node holds (see [`common::stored_votes`]); its blocks carry no
/// evidence, since no validator here equivocates.
fn votes_of(home: &Home, to: u64) -> Vec<Vote> {
    let votes = common::stored_votes(home, to);
    let store = SledStore::open(&home.data().join("db")).expect("open the node's store");
    for h in 1..=to {
        if let Some(b) = store.block(Height(h)).expect("block") {
            assert!(b.evidence.is_empty(), "block {h} carries evidence");
        }
    }
    votes
}

/// A node's block ids from height 1, and each transaction's (height, index).
type Chain = (Vec<BlockId>, HashMap<Hash, (u64, u32)>);

/// The block ids of heights 1 to `to` of the node at `grpc`, and the height
/// and index of every transaction in them, streamed with StreamBlockRange.
async fn chain_of(grpc: &str, to: u64) -> Chain {
    let cl = Client::connect(grpc).await.expect("connect");
    let mut sync = SyncServiceClient::new(cl.channel()).max_decoding_message_size(64 << 20);
    let mut ids = Vec::new();
    let mut txs = HashMap::new();
    let mut from = 1;
    while from <= to {
        let end = to.min(from + MAX_RANGE - 1);
        let mut s = sync
            .stream_block_range(pb::StreamBlockRangeRequest {
                from_height: from,
                to_height: end,
            })
            .await
            .expect("block range")
            .into_inner();
        while let Some(item) = s.message().await.expect("block") {
            let b = Block::from_proto(item.block.expect("block")).expect("valid block");
            for (i, t) in b.txs.iter().enumerate() {
                txs.insert(Hash::digest(t), (b.height().0, i as u32));
            }
            ids.push(b.id());
        }
        from = end + 1;
    }
    assert_eq!(ids.len() as u64, to, "{grpc}: blocks missing");
    (ids, txs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "several minutes; run with --ignored"]
async fn crash_loop_loses_nothing_forks_never_and_never_double_signs() {
    let cycles: usize = std::env::var("CONSORT_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("CONSORT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("crash loop: seed {seed} (CONSORT_CRASH_SEED={seed} replays the schedule)");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let mut c = Cluster::generate_with(VALIDATORS, 0, 32, |s| s.clients = CLIENTS);
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 2, LONG).await, "{}", c.logs());

    let grpc: Vec<String> = c.nodes.iter().map(|n| n.grpc.clone()).collect();
    let keys: Vec<Keypair> = (0..CLIENTS)
        .map(|i| {
            read_key(&c.dir.path().join(format!("clients/client{i}.json"))).expect("client key")
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let to = keys[(i + 1) % CLIENTS].public();
        load.push(tokio::spawn(client_loop(
            grpc.clone(),
            k.clone(),
            to,
            stop.clone(),
            committed.clone(),
            Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )));
    }

    for cycle in 1..=cycles {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(2500))).await;
        let victim = rng.below(VALIDATORS as u64) as usize;
        c.kill(victim);
        let down = Duration::from_millis(200 + rng.below(2000));
        tokio::time::sleep(down).await;
        c.start(victim);
        // The next victim is chosen once this one answers again, so that at most
        // one validator is down at a time and the chain stays live.
        let deadline = Instant::now() + LONG;
        while c.height(victim).await.is_none() {
            assert!(
                c.is_running(victim) && Instant::now() < deadline,
                "validator {victim} did not come back in cycle {cycle}\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let n = committed.lock().await.len();
        println!(
            "cycle {cycle:>2}: killed validator {victim} for {:>4} ms; {n} txs committed so far",
            down.as_millis()
        );
    }

    stop.store(true, Ordering::Relaxed);
    for l in load {
        let _ = tokio::time::timeout(Duration::from_secs(90), l).await;
    }
    let committed = committed.lock().await.clone();

    // Every node reaches the same height, then stops; the stores are read
    // directly afterwards.
    let mut top = 0;
    for i in 0..VALIDATORS {
        top = top.max(c.height(i).await.unwrap_or(0));
    }
    assert!(
        c.wait_height(&[0, 1, 2, 3], top + 1, LONG).await,
        "validators do not all reach height {}\n{}",
        top + 1,
        c.logs()
    );
    let top = top + 1;

    // Every node's chain up to `top`, streamed: block ids, and where each
    // transaction sits.
    let mut chains: Vec<Chain> = Vec::new();
    for addr in &grpc {
        chains.push(chain_of(addr, top).await);
    }

    // 0 lost: every transaction reported committed is where it was reported,
    // on every node.
    let mut lost = 0;
    for (i, (_, txs)) in chains.iter().enumerate() {
        for t in &committed {
            let at = txs.get(&t.hash);
            if at != Some(&(t.height, t.index)) {
                lost += 1;
                println!(
                    "node {i}: committed tx {} at {}:{} is at {at:?}",
                    t.hash, t.height, t.index
                );
            }
        }
    }

    // 0 forks: one block id per height across the nodes.
    let mut forks = 0;
    for h in 0..top as usize {
        let ids: Vec<BlockId> = chains.iter().map(|(ids, _)| ids[h]).collect();
        if ids.iter().any(|id| *id != ids[0]) {
            forks += 1;
            println!("fork at height {}: {ids:?}", h + 1);
        }
    }

    // 0 double signs: stop the nodes (kill -9 once more), then read every vote
    // they hold.
    let mut equivocations_logged = 0;
    for i in 0..VALIDATORS {
        c.kill(i);
        equivocations_logged += c.log_of(i).matches("equivocation detected").count();
    }
    let mut slots: HashMap<(PublicKey, Height, Round, VoteType), Option<BlockId>> = HashMap::new();
    let mut double_signs = 0;
    let mut votes_checked = 0;
    for i in 0..VALIDATORS {
        for v in votes_of(&Home::new(c.home(i)), top) {
            votes_checked += 1;
            let slot = (v.validator, v.height, v.round, v.vote_type);
            match slots.get(&slot) {
                Some(b) if *b != v.block_id => {
                    double_signs += 1;
                    println!("double sign: {slot:?}: {b:?} and {:?}", v.block_id);
                }
                Some(_) => {}
                None => {
                    slots.insert(slot, v.block_id);
                }
            }
        }
    }
    println!(
        "checked {votes_checked} votes in {} slots; {equivocations_logged} equivocations logged; {:.0} s",
        slots.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "crash loop: {cycles} kills, {} txs committed, {lost} lost, {forks} forks, {} double signs, height {top}",
        committed.len(),
        double_signs + equivocations_logged
    );
    assert!(
        !committed.is_empty(),
        "no transaction was committed under load"
    );
    assert_eq!(lost, 0, "committed transactions lost");
    assert_eq!(forks, 0, "forks");
    assert_eq!(double_signs + equivocations_logged, 0, "double signs");
}
