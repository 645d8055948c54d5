//! Onboarding by snapshot and catching up by blocks, over real processes:
//! four validators and a fifth node that joins.

mod common;

use std::time::Duration;

use common::Cluster;
use consort::config::read_key;

const LONG: Duration = Duration::from_secs(240);

/// Four validators holding `entries` genesis accounts, snapshots every 10
/// blocks, plus a member node (index 4) set to state-sync from them.
fn network(slot: u16, entries: u64, chunk_bytes: usize, snapshots: bool) -> Cluster {
    let c = Cluster::generate_with(4, 1, slot, |s| {
        s.extra_accounts = entries;
        s.clients = 1;
        // A steady block rate that a node catching up outruns even on a loaded
        // machine.
        s.consensus.commit_delay_ms = 150;
    });
    let servers: Vec<String> = c.nodes[..4].iter().map(|n| n.grpc.clone()).collect();
    for i in 0..5 {
        c.edit_config(i, |cfg| {
            cfg.sync.snapshot_interval = if snapshots { 10 } else { 0 };
            cfg.sync.snapshot_keep = 50;
            cfg.sync.chunk_bytes = chunk_bytes;
            if i == 4 {
                cfg.sync.state_sync = true;
                cfg.sync.rpc_servers = servers.clone();
            }
        });
    }
    c
}

/// Waits until validator 0 has taken a snapshot (it lists one).
async fn wait_snapshot(c: &Cluster) -> u64 {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        if let Ok(ch) =
            tonic::transport::Endpoint::from_shared(format!("http://{}", c.nodes[0].grpc))
                .expect("endpoint")
                .connect()
                .await
        {
            let mut s = consort::pb::sync_service_client::SyncServiceClient::new(ch);
            if let Ok(r) = s.list_snapshots(consort::pb::ListSnapshotsRequest {}).await {
                if let Some(snap) = r.into_inner().snapshots.first() {
                    return snap.height;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot was taken\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The joiner has caught up: it has the validators' tip, the same block ids
/// after its snapshot, and the same state root.
async fn assert_joined(c: &Cluster) {
    let tip = c.height(0).await.expect("height");
    assert!(
        c.wait_height(&[4], tip + 3, LONG).await,
        "the joiner did not reach the tip\n{}",
        c.logs()
    );
    let j = c.client(4).await.expect("joiner client");
    let v = c.client(0).await.expect("validator client");
    let js = j.status().await.expect("status");
    let h = js.height;
    assert!(c.wait_height(&[0], h, LONG).await);
    for height in js.base_height.max(1)..=h {
        let (jb, jid) = j.block(height).await.expect("joiner block");
        let (_, vid) = v.block(height).await.expect("validator block");
        assert_eq!(jid, vid, "different block at {height}");
        assert_eq!(jb.id(), jid);
    }
    let (jb, _) = j.block(h).await.expect("block");
    let (vb, _) = v.block(h).await.expect("block");
    assert_eq!(jb.header.app_hash, vb.header.app_hash);
    // State read through the joiner matches a validator's.
    let client = read_key(&c.dir.path().join("clients/client0.json"))
        .expect("key")
        .public();
    let ja = j.account(&client).await.expect("account");
    let va = v.account(&client).await.expect("account");
    assert_eq!((ja.balance, ja.nonce), (va.balance, va.nonce));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_node_joins_by_state_sync_with_100k_entries() {
    let mut c = network(20, 100_000, 256 * 1024, true);
    for i in 0..4 {
        c.start(i);
    }
    let snap = wait_snapshot(&c).await;
    c.start(4);
    assert_joined(&c).await;
    let log = c.log_of(4);
    assert!(
        log.contains("state restored from snapshot"),
        "the joiner did not restore a snapshot\n{log}"
    );
    let base = c
        .client(4)
        .await
        .expect("client")
        .status()
        .await
        .expect("status")
        .base_height;
    assert!(
        base >= snap,
        "the joiner replayed history instead (base {base}, snapshot {snap})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_corrupt_chunks_is_dropped_and_the_restore_completes() {
    let mut c = network(21, 20_000, 16 * 1024, true);
    c.set_env(1, "CONSORT_FAULTS", "serve-corrupt-chunks");
    for i in 0..4 {
        c.start(i);
    }
    wait_snapshot(&c).await;
    c.start(4);
    assert_joined(&c).await;
    let log = c.log_of(4);
    assert!(
        log.contains("dropping a server that served a bad chunk"),
        "{log}"
    );
    assert!(log.contains("state restored from snapshot"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_light_block_is_refused_before_any_chunk() {
    let mut c = network(22, 5_000, 16 * 1024, true);
    // Every server forges: no snapshot can be verified, so the joiner refuses
    // them all and falls back to block sync.
    for i in 0..4 {
        c.set_env(i, "CONSORT_FAULTS", "serve-forged-light-blocks");
        c.start(i);
    }
    wait_snapshot(&c).await;
    c.start(4);
    assert_joined(&c).await;
    let log = c.log_of(4);
    assert!(log.contains("its header is not certified"), "{log}");
    assert!(
        !log.contains("restoring snapshot"),
        "a chunk was fetched for a forged snapshot\n{log}"
    );
    assert_eq!(c.metric(4, "consort_sync_chunks_done").await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_killed_mid_restore_resumes() {
    let mut c = network(23, 60_000, 4 * 1024, true);
    c.set_env(4, "CONSORT_SYNC_THROTTLE_MS", "20");
    for i in 0..4 {
        c.start(i);
    }
    wait_snapshot(&c).await;
    c.start(4);
    // Kill it once some, not all, chunks are in.
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let done = c.metric(4, "consort_sync_chunks_done").await.unwrap_or(0.0);
        let total = c
            .metric(4, "consort_sync_chunks_total")
            .await
            .unwrap_or(0.0);
        if done >= 5.0 && done < total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "restore never got going\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.kill(4);
    c.start(4);
    assert_joined(&c).await;
    let log = c.log_of(4);
    assert!(log.contains("resuming an interrupted state sync"), "{log}");
    // What was flushed before the kill is kept (and read back for the root
    // check), not fetched again.
    assert!(
        log.contains("keeping the chunks written before the restart"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_snapshot_anywhere_the_joiner_syncs_blocks_from_genesis() {
    let mut c = network(24, 0, 64 * 1024, false);
    for i in 0..4 {
        c.start(i);
    }
    assert!(c.wait_height(&[0, 1, 2, 3], 20, LONG).await, "{}", c.logs());
    c.start(4);
    assert_joined(&c).await;
    let log = c.log_of(4);
    assert!(log.contains("no server offers a snapshot"), "{log}");
    let s = c
        .client(4)
        .await
        .expect("client")
        .status()
        .await
        .expect("status");
    assert_eq!(s.base_height, 1, "the joiner should hold the whole history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_down_for_500_blocks_catches_up_and_votes_again() {
    let mut c = Cluster::generate(4, 0, 25);
    c.start_all();
    assert!(c.wait_height(&[0, 1, 2, 3], 3, LONG).await, "{}", c.logs());
    c.kill(3);
    let h = c.height(0).await.expect("height");
    assert!(
        c.wait_height(&[0, 1, 2], h + 500, Duration::from_secs(400))
            .await,
        "{}",
        c.logs()
    );
    c.start(3);
    let tip = c.height(0).await.expect("height");
    assert!(
        c.wait_height(&[3], tip, LONG).await,
        "the validator did not catch up\n{}",
        c.logs()
    );
    let key3 = read_key(&c.home(3).join("node_key.json"))
        .expect("key")
        .public();
    let cl = c.client(0).await.expect("client");
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let latest = cl.status().await.expect("status").height;
        let commit = cl.commit(latest).await.expect("commit");
        if latest > tip && commit.signatures.iter().any(|s| s.validator == key3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "it never voted again\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A joiner that crashes between the last writes of its restore (the block of
/// the snapshot height appended, then the state's height flushed, then the
/// restore marked done) resumes on restart and follows the chain, whatever its
/// configuration says about state sync now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_crashing_between_the_last_writes_of_a_restore_recovers() {
    let mut c = network(27, 2_000, 64 * 1024, true);
    for i in 0..4 {
        c.start(i);
    }
    wait_snapshot(&c).await;
    for (run, point) in ["state-sync-block-appended", "state-sync-state-flushed"]
        .iter()
        .enumerate()
    {
        if run > 0 {
            // Start over from an empty data directory, with the next point.
            c.kill(4);
            std::fs::remove_dir_all(c.home(4).join("data")).expect("wipe the joiner");
        }
        c.set_env(4, "CONSORT_CRASH_AT", point);
        c.start(4);
        let deadline = tokio::time::Instant::now() + LONG;
        while c.is_running(4) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the joiner never reached {point}\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            c.log_of(4).contains("TEST CRASH POINT REACHED"),
            "the joiner stopped before {point}\n{}",
            c.logs()
        );
        c.kill(4);
        // Restart without the crash point and with state sync switched off:
        // the interrupted restore is resumed all the same.
        c.set_env(4, "CONSORT_CRASH_AT", "");
        c.edit_config(4, |cfg| cfg.sync.state_sync = false);
        c.start(4);
        assert_joined(&c).await;
        let log = c.log_of(4);
        assert!(
            log.matches("resuming an interrupted state sync").count() > run,
            "{point}: the restart did not resume the restore\n{log}"
        );
        c.edit_config(4, |cfg| cfg.sync.state_sync = true);
    }
}
