//! One conformance suite run against [`MemStore`] and [`SledStore`], damaged-data
//! tests (torn WAL records, corrupt block records, corrupt signing-state files),
//! a crash test that aborts a writer process, and an append latency measurement.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::encoding::wal_key;
use super::engine::{Engine, TreeId};
use super::*;
use crate::codec::Wire;
use crate::consensus::{PersistedState, SignedMessage};
use crate::types::{
    Block, Commit, Hash, Header, Height, Keypair, Proposal, Round, Timestamp, Vote, VoteType,
};

// ---- fixtures ----

fn keys() -> Vec<Keypair> {
    (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect()
}

/// Deterministic bytes that do not compress.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A block at `height` carrying about `tx_bytes` of transactions.
fn block_at(height: u64, tx_bytes: usize) -> Block {
    let txs: Vec<Bytes> = if tx_bytes == 0 {
        vec![]
    } else {
        noise(height, tx_bytes)
            .chunks(256)
            .map(Bytes::copy_from_slice)
            .collect()
    };
    let k = &keys()[0];
    Block {
        header: Header {
            chain_id: "test-chain".into(),
            height: Height(height),
            time: Timestamp(1_000 + height),
            last_block_id: (height > 1).then(|| Hash::digest(&(height - 1).to_be_bytes())),
            last_commit_hash: Hash::ZERO,
            data_hash: Block::data_hash_of(&txs),
            app_hash: Hash::digest(b"app"),
            validators_hash: Hash::digest(b"vals"),
            evidence_hash: Block::evidence_hash_of(&[]),
            proposer: k.public(),
        },
        txs,
        last_commit: None,
        evidence: vec![],
    }
}

/// A commit of three of four validators for `block`.
fn commit_for(block: &Block) -> Commit {
    let id = block.id();
    let votes: Vec<Vote> = keys()[..3]
        .iter()
        .map(|k| vote(k, VoteType::Precommit, block.height(), Some(id)))
        .collect();
    Commit::from_precommits(block.height(), Round(0), id, &votes)
}

fn vote(k: &Keypair, t: VoteType, h: Height, id: Option<Hash>) -> Vote {
    Vote::new_signed(k, "test-chain", t, h, Round(0), id, Timestamp(7))
}

fn append_n<S: BlockStore>(s: &S, from: u64, to: u64) {
    for h in from..=to {
        let b = block_at(h, 300);
        s.append(&b, &commit_for(&b), &h.to_be_bytes()).unwrap();
    }
}

fn wal_entries_at(h: u64) -> Vec<WalEntry> {
    let ks = keys();
    let block = block_at(h, 100);
    let proposal = Proposal::new_signed(
        &ks[1],
        "test-chain",
        Height(h),
        Round(0),
        None,
        block.id(),
        Timestamp(5),
    );
    vec![
        WalEntry::Proposal { proposal, block },
        WalEntry::Vote(vote(&ks[0], VoteType::Prevote, Height(h), None)),
        WalEntry::Vote(vote(
            &ks[2],
            VoteType::Precommit,
            Height(h),
            Some(Hash::ZERO),
        )),
    ]
}

/// What the suite needs beyond the public traits: the raw trees, to damage them.
trait Harness: BlockStore + WalStore + MetaStore + Clone {
    fn raw(&self) -> &dyn Engine;
}

impl Harness for MemStore {
    fn raw(&self) -> &dyn Engine {
        self.engine()
    }
}

impl Harness for SledStore {
    fn raw(&self) -> &dyn Engine {
        self.engine()
    }
}

fn wal_keys(s: &dyn Engine, h: u64) -> Vec<Vec<u8>> {
    s.keys(
        TreeId::Wal,
        &wal_key(Height(h), 0),
        &wal_key(Height(h), u64::MAX),
    )
    .unwrap()
}

// ---- the conformance suite ----

fn empty_store<S: Harness>(s: &S) {
    assert_eq!(s.latest_height(), Height(0));
    assert_eq!(s.base_height(), Height(0));
    assert_eq!(s.block(Height(1)).unwrap(), None);
    assert_eq!(s.block(Height(0)).unwrap(), None);
    assert_eq!(s.commit(Height(1)).unwrap(), None);
    assert_eq!(s.stored(Height(1)).unwrap(), None);
    assert_eq!(s.block_bytes(Height(1)).unwrap(), None);
    assert_eq!(s.block_id(Height(1)).unwrap(), None);
    assert_eq!(s.prune_below(Height(10)).unwrap(), 0);
    assert!(s.wal_entries(Height(1)).unwrap().is_empty());
    assert_eq!(s.meta_get("nothing").unwrap(), None);
}

fn append_and_read_back<S: Harness>(s: &S) {
    for h in 1..=5u64 {
        let b = block_at(h, 1024);
        let c = commit_for(&b);
        s.append(&b, &c, format!("delta {h}").as_bytes()).unwrap();
        assert_eq!(s.latest_height(), Height(h));
        assert_eq!(s.base_height(), Height(1));
    }
    for h in 1..=5u64 {
        let b = block_at(h, 1024);
        let c = commit_for(&b);
        assert_eq!(s.block(Height(h)).unwrap().as_ref(), Some(&b));
        assert_eq!(s.commit(Height(h)).unwrap().as_ref(), Some(&c));
        assert_eq!(s.block_id(Height(h)).unwrap(), Some(b.id()));
        let bytes = s.block_bytes(Height(h)).unwrap().unwrap();
        assert_eq!(bytes, Wire::encode(&b));
        assert_eq!(
            <Block as Wire>::decode(&bytes).unwrap(),
            b,
            "served bytes decode to the block"
        );
        let stored = s.stored(Height(h)).unwrap().unwrap();
        assert_eq!(
            stored,
            StoredBlock {
                block: b,
                commit: c,
                app_delta: format!("delta {h}").into_bytes(),
            }
        );
    }
    assert_eq!(s.block(Height(6)).unwrap(), None);
    // An empty delta and an empty block are stored as such.
    let b = block_at(6, 0);
    s.append(&b, &commit_for(&b), &[]).unwrap();
    let stored = s.stored(Height(6)).unwrap().unwrap();
    assert!(stored.app_delta.is_empty());
    assert!(stored.block.txs.is_empty());
}

fn refuses_heights_that_are_not_next<S: Harness>(s: &S) {
    append_n(s, 1, 3);
    for h in [1u64, 2, 3, 5, 100] {
        let b = block_at(h, 10);
        match s.append(&b, &commit_for(&b), &[]) {
            Err(StorageError::NotNext { expected, got }) => {
                assert_eq!(expected, Height(4));
                assert_eq!(got, Height(h));
            }
            other => panic!("height {h}: {other:?}"),
        }
    }
    assert_eq!(s.latest_height(), Height(3));
    // The refused writes left nothing behind.
    assert_eq!(s.block(Height(5)).unwrap(), None);
    assert_eq!(s.block(Height(3)).unwrap(), Some(block_at(3, 300)));
    append_n(s, 4, 4);
    assert_eq!(s.latest_height(), Height(4));
}

fn refuses_mismatched_writes<S: Harness>(s: &S) {
    let b1 = block_at(1, 10);
    let b2 = block_at(2, 10);
    // A commit for another block, or another height.
    assert!(matches!(
        s.append(&b1, &commit_for(&b2), &[]),
        Err(StorageError::Mismatch { .. })
    ));
    let mut c = commit_for(&b1);
    c.block_id = Hash::ZERO;
    assert!(matches!(
        s.append(&b1, &c, &[]),
        Err(StorageError::Mismatch { .. })
    ));
    // Height 0 is never a block.
    let b0 = block_at(0, 10);
    let mut c0 = commit_for(&b0);
    c0.height = Height(0);
    assert!(matches!(
        s.append(&b0, &c0, &[]),
        Err(StorageError::Mismatch { .. })
    ));
    assert_eq!(s.latest_height(), Height(0));
    // A WAL entry of another height.
    let e = wal_entries_at(3).remove(1);
    assert!(matches!(
        s.wal_append(Height(4), &e),
        Err(StorageError::Mismatch { .. })
    ));
    assert!(s.wal_entries(Height(4)).unwrap().is_empty());
}

fn first_block_at_any_height<S: Harness>(s: &S) {
    // A node restored from a snapshot at 1000 starts its history there.
    append_n(s, 1000, 1002);
    assert_eq!(s.base_height(), Height(1000));
    assert_eq!(s.latest_height(), Height(1002));
    assert_eq!(s.block(Height(999)).unwrap(), None);
    assert_eq!(s.block(Height(1000)).unwrap(), Some(block_at(1000, 300)));
    let b = block_at(1, 10);
    assert!(matches!(
        s.append(&b, &commit_for(&b), &[]),
        Err(StorageError::NotNext {
            expected: Height(1003),
            got: Height(1)
        })
    ));
}

fn prunes_below_but_never_the_latest<S: Harness>(s: &S) {
    append_n(s, 1, 10);
    assert_eq!(s.prune_below(Height(1)).unwrap(), 0);
    assert_eq!(s.prune_below(Height(4)).unwrap(), 3);
    assert_eq!(s.base_height(), Height(4));
    assert_eq!(s.block(Height(3)).unwrap(), None);
    assert_eq!(s.commit(Height(3)).unwrap(), None);
    assert!(s.block(Height(4)).unwrap().is_some());
    // Again at the same height: nothing left to prune.
    assert_eq!(s.prune_below(Height(4)).unwrap(), 0);
    assert_eq!(s.prune_below(Height(2)).unwrap(), 0);
    // Far above the tip: everything but the latest.
    assert_eq!(s.prune_below(Height(1_000)).unwrap(), 6);
    assert_eq!(s.base_height(), Height(10));
    assert_eq!(s.latest_height(), Height(10));
    assert!(s.block(Height(10)).unwrap().is_some());
    assert!(s.block(Height(9)).unwrap().is_none());
    // The log goes on from the tip.
    append_n(s, 11, 12);
    assert_eq!(s.base_height(), Height(10));
    assert_eq!(s.latest_height(), Height(12));
}

fn prunes_more_than_one_batch<S: Harness>(s: &S) {
    // Tests prune in batches of 64.
    for h in 1..=150u64 {
        let b = block_at(h, 0);
        s.append(&b, &commit_for(&b), &[]).unwrap();
    }
    assert_eq!(s.prune_below(Height(140)).unwrap(), 139);
    assert_eq!(s.base_height(), Height(140));
    for h in [1, 64, 65, 128, 129, 139] {
        assert_eq!(s.block(Height(h)).unwrap(), None, "height {h}");
    }
    assert!(s.block(Height(140)).unwrap().is_some());
    assert!(s.block(Height(150)).unwrap().is_some());
}

fn wal_round_trip_and_clear<S: Harness>(s: &S) {
    for h in [5u64, 6, 7] {
        for e in wal_entries_at(h) {
            s.wal_append(Height(h), &e).unwrap();
        }
    }
    // Entries come back per height, in append order.
    for h in [5u64, 6, 7] {
        assert_eq!(s.wal_entries(Height(h)).unwrap(), wal_entries_at(h));
    }
    assert!(s.wal_entries(Height(4)).unwrap().is_empty());
    // More entries at a height that already has some go after them.
    let extra = WalEntry::Vote(vote(&keys()[3], VoteType::Prevote, Height(6), None));
    s.wal_append(Height(6), &extra).unwrap();
    let mut expected = wal_entries_at(6);
    expected.push(extra);
    assert_eq!(s.wal_entries(Height(6)).unwrap(), expected);

    s.wal_clear_below(Height(7)).unwrap();
    assert!(s.wal_entries(Height(5)).unwrap().is_empty());
    assert!(s.wal_entries(Height(6)).unwrap().is_empty());
    assert_eq!(s.wal_entries(Height(7)).unwrap(), wal_entries_at(7));
    s.wal_clear_below(Height(7)).unwrap();
    assert_eq!(s.wal_entries(Height(7)).unwrap(), wal_entries_at(7));
    s.wal_clear_below(Height(u64::MAX)).unwrap();
    assert!(s.wal_entries(Height(7)).unwrap().is_empty());
}

fn wal_drops_damaged_records<S: Harness>(s: &S) {
    let h = 9u64;
    let entries = wal_entries_at(h);
    for e in &entries {
        s.wal_append(Height(h), e).unwrap();
    }
    let raw = s.raw();
    let keys = wal_keys(raw, h);
    assert_eq!(keys.len(), 3);

    // A torn tail: the last record cut short, at every length.
    let last = raw.get(TreeId::Wal, &keys[2]).unwrap().unwrap();
    for cut in [0, 1, 7, 8, 9, last.len() / 2, last.len() - 1] {
        raw.insert(TreeId::Wal, &keys[2], &last[..cut]).unwrap();
        assert_eq!(
            s.wal_entries(Height(h)).unwrap(),
            entries[..2].to_vec(),
            "cut at {cut}"
        );
    }
    // A bit flipped near the end.
    let mut flipped = last.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0x10;
    raw.insert(TreeId::Wal, &keys[2], &flipped).unwrap();
    assert_eq!(s.wal_entries(Height(h)).unwrap(), entries[..2].to_vec());

    // A damaged record is dropped alone: the intact ones around it are kept,
    // and so are entries appended after it.
    raw.insert(TreeId::Wal, &keys[2], &last).unwrap();
    let mid = raw.get(TreeId::Wal, &keys[1]).unwrap().unwrap();
    raw.insert(TreeId::Wal, &keys[1], &noise(1, mid.len()))
        .unwrap();
    let later = WalEntry::Vote(vote(&keys_of(3), VoteType::Prevote, Height(h), None));
    s.wal_append(Height(h), &later).unwrap();
    assert_eq!(
        s.wal_entries(Height(h)).unwrap(),
        vec![entries[0].clone(), entries[2].clone(), later]
    );

    // An intact frame around an entry of another height is refused too.
    let other = super::encoding::encode_wal_entry(&wal_entries_at(h + 1)[1]);
    raw.insert(TreeId::Wal, &keys[0], &other).unwrap();
    assert_eq!(s.wal_entries(Height(h)).unwrap().len(), 2);
}

fn keys_of(i: usize) -> Keypair {
    keys().swap_remove(i)
}

fn damaged_block_records_are_errors<S: Harness>(s: &S) {
    append_n(s, 1, 3);
    let raw = s.raw();
    let key = super::encoding::height_key(Height(2));
    let good = raw.get(TreeId::Blocks, &key).unwrap().unwrap();

    raw.insert(TreeId::Blocks, &key, &good[..good.len() / 2])
        .unwrap();
    assert!(matches!(
        s.block(Height(2)),
        Err(StorageError::Corrupt { .. })
    ));
    assert!(matches!(
        s.block_id(Height(2)),
        Err(StorageError::Corrupt { .. })
    ));

    // An intact record under the wrong key.
    let other = raw
        .get(TreeId::Blocks, &super::encoding::height_key(Height(3)))
        .unwrap()
        .unwrap();
    raw.insert(TreeId::Blocks, &key, &other).unwrap();
    let err = s.block(Height(2)).unwrap_err();
    assert!(err.to_string().contains("height 2"), "{err}");
    assert!(matches!(
        s.commit(Height(2)),
        Err(StorageError::Corrupt { .. })
    ));
    assert!(matches!(
        s.stored(Height(2)),
        Err(StorageError::Corrupt { .. })
    ));
    // The neighbours are untouched.
    assert_eq!(s.block(Height(1)).unwrap(), Some(block_at(1, 300)));
}

fn meta_put_get_replace<S: Harness>(s: &S) {
    assert_eq!(s.meta_get("sync/progress").unwrap(), None);
    s.meta_put("sync/progress", b"chunk 3").unwrap();
    s.meta_put("other", b"").unwrap();
    assert_eq!(
        s.meta_get("sync/progress").unwrap().as_deref(),
        Some(&b"chunk 3"[..])
    );
    assert_eq!(s.meta_get("other").unwrap().as_deref(), Some(&b""[..]));
    s.meta_put("sync/progress", b"chunk 4").unwrap();
    assert_eq!(
        s.meta_get("sync/progress").unwrap().as_deref(),
        Some(&b"chunk 4"[..])
    );
    assert_eq!(s.meta_get("sync").unwrap(), None);
}

fn clones_share_data<S: Harness>(s: &S) {
    let t = s.clone();
    append_n(s, 1, 2);
    assert_eq!(t.latest_height(), Height(2));
    t.meta_put("k", b"v").unwrap();
    assert_eq!(s.meta_get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

fn concurrent_appends_keep_the_log_contiguous<S: Harness>(s: &S) {
    // Four writers race to append the same heights: each height is taken once,
    // the losers get NotNext, and the log has no gap.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let s = s.clone();
            scope.spawn(move || {
                for h in 1..=30u64 {
                    let b = block_at(h, 64);
                    match s.append(&b, &commit_for(&b), &[]) {
                        Ok(()) | Err(StorageError::NotNext { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                    let e = WalEntry::Vote(vote(&keys()[0], VoteType::Prevote, Height(h), None));
                    s.wal_append(Height(h), &e).unwrap();
                }
            });
        }
    });
    assert_eq!(s.latest_height(), Height(30));
    for h in 1..=30u64 {
        assert_eq!(s.block(Height(h)).unwrap(), Some(block_at(h, 64)));
        assert_eq!(s.wal_entries(Height(h)).unwrap().len(), 4);
    }
}

fn deferred_appends_follow_the_same_rules<S: Harness>(s: &S) {
    append_n(s, 1, 2);
    for h in 3..=10u64 {
        let b = block_at(h, 200);
        s.append_deferred(&b, &commit_for(&b), &h.to_be_bytes())
            .unwrap();
        assert_eq!(s.latest_height(), Height(h));
    }
    // The same checks as a durable append: not the next height, a foreign commit.
    let b = block_at(12, 10);
    assert!(matches!(
        s.append_deferred(&b, &commit_for(&b), &[]),
        Err(StorageError::NotNext { .. })
    ));
    let b = block_at(11, 10);
    let other = block_at(11, 11);
    assert!(matches!(
        s.append_deferred(&b, &commit_for(&other), &[]),
        Err(StorageError::Mismatch { .. })
    ));
    s.sync_blocks().unwrap();
    // A durable append after deferred ones continues the same log.
    append_n(s, 11, 11);
    for h in 3..=10u64 {
        let stored = s.stored(Height(h)).unwrap().unwrap();
        assert_eq!(stored.block, block_at(h, 200));
        assert_eq!(stored.app_delta, h.to_be_bytes());
    }
}

/// A conflicting pair of prevotes of validator `i` at height `h`.
fn equivocation(i: usize, h: u64) -> crate::types::Evidence {
    let k = &keys()[i];
    let a = vote(k, VoteType::Prevote, Height(h), Some(Hash::digest(b"a")));
    let b = vote(k, VoteType::Prevote, Height(h), Some(Hash::digest(b"b")));
    crate::types::Evidence::DuplicateVote(crate::types::DuplicateVote::new(a, b).unwrap())
}

fn evidence_index_lists_and_finds<S: Harness + EvidenceStore>(s: &S) {
    let e1 = equivocation(0, 3);
    let e2 = equivocation(1, 3);
    let e3 = equivocation(2, 7);
    assert_eq!(s.evidence_committed_at(&e1.hash()).unwrap(), None);
    assert!(
        s.list_evidence(Height(0), Height(u64::MAX), 10)
            .unwrap()
            .is_empty()
    );
    s.index_evidence(Height(4), &[e1.clone(), e2.clone()])
        .unwrap();
    s.index_evidence(Height(5), &[]).unwrap();
    s.index_evidence(Height(9), std::slice::from_ref(&e3))
        .unwrap();
    assert_eq!(
        s.evidence_committed_at(&e1.hash()).unwrap(),
        Some(Height(4))
    );
    assert_eq!(
        s.evidence_committed_at(&e3.hash()).unwrap(),
        Some(Height(9))
    );
    assert_eq!(
        s.evidence_committed_at(&equivocation(3, 3).hash()).unwrap(),
        None
    );
    let all = s.list_evidence(Height(1), Height(u64::MAX), 100).unwrap();
    let got: Vec<(Height, crate::types::Evidence)> =
        all.into_iter().map(|c| (c.height, c.evidence)).collect();
    assert_eq!(
        got,
        vec![
            (Height(4), e1.clone()),
            (Height(4), e2),
            (Height(9), e3.clone())
        ]
    );
    // Range bounds are inclusive; the limit cuts in order.
    assert_eq!(s.list_evidence(Height(4), Height(4), 100).unwrap().len(), 2);
    assert_eq!(s.list_evidence(Height(5), Height(8), 100).unwrap().len(), 0);
    assert_eq!(
        s.list_evidence(Height(9), Height(9), 100).unwrap()[0].evidence,
        e3
    );
    let first = s.list_evidence(Height(0), Height(100), 1).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].evidence, e1);
    assert!(
        s.list_evidence(Height(9), Height(4), 100)
            .unwrap()
            .is_empty()
    );
    assert!(s.list_evidence(Height(1), Height(9), 0).unwrap().is_empty());
}

fn evidence_index_rebuilds_from_the_log<S: Harness + EvidenceStore>(s: &S) {
    append_n(s, 1, 2);
    let ev = equivocation(0, 2);
    let mut b = block_at(3, 10);
    b.evidence = vec![ev.clone()];
    b.header.evidence_hash = Block::evidence_hash_of(&b.evidence);
    s.append(&b, &commit_for(&b), &[]).unwrap();
    append_n(s, 4, 4);
    // Nothing was indexed (a crash after the appends): the log tells.
    assert_eq!(s.evidence_committed_at(&ev.hash()).unwrap(), None);
    s.index_missing_evidence().unwrap();
    assert_eq!(
        s.evidence_committed_at(&ev.hash()).unwrap(),
        Some(Height(3))
    );
    let listed = s.list_evidence(Height(1), Height(4), 10).unwrap();
    assert_eq!(
        listed,
        vec![CommittedEvidence {
            height: Height(3),
            evidence: ev
        }]
    );
    // Idempotent.
    s.index_missing_evidence().unwrap();
    assert_eq!(s.list_evidence(Height(1), Height(4), 10).unwrap().len(), 1);
}

fn snapshots_list_only_complete_heights<S: Harness + SnapshotStore>(s: &S) {
    assert_eq!(s.snapshot_heights().unwrap(), vec![]);
    for (h, complete) in [(100, true), (200, false), (300, true), (u64::MAX, true)] {
        for i in 0..3u32 {
            s.put_snapshot_chunk(Height(h), i, &[i as u8; 100]).unwrap();
        }
        if complete {
            s.put_snapshot_manifest(Height(h), b"manifest").unwrap();
        }
    }
    // 200 has chunks but no manifest: an interrupted snapshot.
    assert_eq!(
        s.snapshot_heights().unwrap(),
        vec![Height(100), Height(300), Height(u64::MAX)]
    );
    assert_eq!(
        s.snapshot_chunk(Height(300), 2).unwrap(),
        Some(vec![2u8; 100])
    );
    s.delete_snapshot(Height(100)).unwrap();
    assert_eq!(
        s.snapshot_heights().unwrap(),
        vec![Height(300), Height(u64::MAX)]
    );
    assert_eq!(s.snapshot_chunk(Height(100), 0).unwrap(), None);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod mem {
            use super::*;
            $(
                #[test]
                fn $case() {
                    super::$case(&MemStore::new());
                }
            )*
        }

        mod sled {
            use super::*;
            $(
                #[test]
                fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$case(&SledStore::open(dir.path()).unwrap());
                }
            )*
        }
    };
}

conformance!(
    empty_store,
    append_and_read_back,
    refuses_heights_that_are_not_next,
    refuses_mismatched_writes,
    first_block_at_any_height,
    prunes_below_but_never_the_latest,
    prunes_more_than_one_batch,
    wal_round_trip_and_clear,
    wal_drops_damaged_records,
    damaged_block_records_are_errors,
    meta_put_get_replace,
    clones_share_data,
    concurrent_appends_keep_the_log_contiguous,
    deferred_appends_follow_the_same_rules,
    evidence_index_lists_and_finds,
    evidence_index_rebuilds_from_the_log,
    snapshots_list_only_complete_heights,
);

#[test]
fn synced_deferred_appends_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        for h in 1..=20u64 {
            let b = block_at(h, 100);
            s.append_deferred(&b, &commit_for(&b), &[]).unwrap();
        }
        s.sync_blocks().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.latest_height(), Height(20));
    for h in 1..=20u64 {
        assert_eq!(s.block(Height(h)).unwrap(), Some(block_at(h, 100)));
    }
}

// ---- the state backend's restore progress ----

fn restore_progress_round_trip(b: &dyn state::StateBackend) {
    assert_eq!(b.restore_progress().unwrap(), Vec::<u8>::new());
    b.set_restore_progress(&[0, 1, 0]).unwrap();
    assert_eq!(b.restore_progress().unwrap(), vec![0, 1, 0]);
    b.set_restore_progress(&[1, 1, 0, 1]).unwrap();
    b.flush().unwrap();
    assert_eq!(b.restore_progress().unwrap(), vec![1, 1, 0, 1]);
    // The progress is beside the state, not in it.
    assert_eq!(b.range(&Hash::ZERO, 10).unwrap(), vec![]);
    assert_eq!(b.applied_height().unwrap(), Height(0));
}

#[test]
fn restore_progress_in_memory() {
    restore_progress_round_trip(&*MemStore::new().state_backend());
    restore_progress_round_trip(&state::MemBackend::default());
}

#[test]
fn restore_progress_in_sled_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    restore_progress_round_trip(&*SledStore::open(dir.path()).unwrap().state_backend());
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        s.state_backend().restore_progress().unwrap(),
        vec![1, 1, 0, 1]
    );
}

// ---- sled across restarts ----

#[test]
fn sled_reopen_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        append_n(&s, 50, 60);
        assert_eq!(s.prune_below(Height(53)).unwrap(), 3);
        for e in wal_entries_at(61) {
            s.wal_append(Height(61), &e).unwrap();
        }
        s.meta_put("k", b"v").unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.base_height(), Height(53));
    assert_eq!(s.latest_height(), Height(60));
    for h in 53..=60u64 {
        let b = block_at(h, 300);
        let stored = s.stored(Height(h)).unwrap().unwrap();
        assert_eq!(stored.block, b);
        assert_eq!(stored.commit, commit_for(&b));
        assert_eq!(stored.app_delta, h.to_be_bytes());
    }
    assert_eq!(s.block(Height(52)).unwrap(), None);
    assert_eq!(s.wal_entries(Height(61)).unwrap(), wal_entries_at(61));
    assert_eq!(s.meta_get("k").unwrap().as_deref(), Some(&b"v"[..]));

    // The log and the WAL go on where they were.
    let b = block_at(62, 10);
    assert!(matches!(
        s.append(&b, &commit_for(&b), &[]),
        Err(StorageError::NotNext {
            expected: Height(61),
            ..
        })
    ));
    append_n(&s, 61, 61);
    let extra = WalEntry::Vote(vote(&keys()[3], VoteType::Precommit, Height(61), None));
    s.wal_append(Height(61), &extra).unwrap();
    let mut expected = wal_entries_at(61);
    expected.push(extra);
    assert_eq!(s.wal_entries(Height(61)).unwrap(), expected);
}

/// sled keeps every leaf it wrote in memory until the database is closed, so
/// the engine reopens it after enough writes. Readers running meanwhile must
/// see every block, and everything must survive the reopens and a restart.
#[test]
fn sled_reopens_after_many_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = SledOptions {
        cache_capacity_bytes: 1 << 20,
        ..SledOptions::default()
    };
    const N: u64 = 48; // ~48 MiB of blocks: at least two reopens
    {
        let s = SledStore::open_with(dir.path(), &options).unwrap();
        let reader = {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut seen = 0;
                while seen < N {
                    let latest = s.latest_height().0;
                    for h in (seen + 1)..=latest {
                        assert_eq!(s.block(Height(h)).unwrap(), Some(block_at(h, 1 << 20)));
                    }
                    seen = latest;
                    std::thread::yield_now();
                }
            })
        };
        for h in 1..=N {
            let b = block_at(h, 1 << 20);
            s.append(&b, &commit_for(&b), &h.to_be_bytes()).unwrap();
            s.meta_put("last", &h.to_be_bytes()).unwrap();
        }
        reader.join().unwrap();
        assert!(s.reopens() >= 2, "{} reopens", s.reopens());
        assert_eq!(s.latest_height(), Height(N));
    }
    let s = SledStore::open_with(dir.path(), &options).unwrap();
    assert_eq!(s.latest_height(), Height(N));
    for h in 1..=N {
        let stored = s.stored(Height(h)).unwrap().unwrap();
        assert_eq!(stored.block, block_at(h, 1 << 20));
        assert_eq!(stored.app_delta, h.to_be_bytes());
    }
    assert_eq!(
        s.meta_get("last").unwrap().as_deref(),
        Some(&N.to_be_bytes()[..])
    );
}

#[test]
fn sled_reopen_keeps_dropping_damaged_wal_records() {
    let dir = tempfile::tempdir().unwrap();
    let entries = wal_entries_at(3);
    {
        let s = SledStore::open(dir.path()).unwrap();
        for e in &entries {
            s.wal_append(Height(3), e).unwrap();
        }
        let keys = wal_keys(s.raw(), 3);
        let v = s.raw().get(TreeId::Wal, &keys[2]).unwrap().unwrap();
        s.raw()
            .insert(TreeId::Wal, &keys[2], &v[..v.len() - 5])
            .unwrap();
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.wal_entries(Height(3)).unwrap(), entries[..2].to_vec());
}

#[test]
fn sled_open_fails_cleanly_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        SledStore::open(&file),
        Err(StorageError::Sled { op: "open", .. })
    ));
}

// ---- sled's own files damaged ----

/// Files under `dir` whose path contains `part`.
fn files_under(dir: &Path, part: &str) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p, part));
        } else if p.to_string_lossy().contains(part) {
            out.push(p);
        }
    }
    out
}

/// Something done to the bytes of a file.
type Damage = fn(&mut Vec<u8>);

/// A closed store of 20 blocks whose files matching `part` went through `damage`.
fn damaged_sled(part: &str, damage: Damage) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        append_n(&s, 1, 20);
    }
    let files = files_under(dir.path(), part);
    assert!(!files.is_empty(), "no {part} files");
    for f in files {
        let mut b = std::fs::read(&f).unwrap();
        if !b.is_empty() {
            damage(&mut b);
            std::fs::write(&f, &b).unwrap();
        }
    }
    dir
}

#[test]
fn sled_recovers_from_a_torn_metadata_log() {
    let damages: [(&str, Damage); 3] = [
        ("truncated", |b| b.truncate(b.len() - 3)),
        ("bit flipped", |b| {
            let n = b.len();
            b[n - 3] ^= 0x20;
        }),
        ("garbage appended", |b| b.extend_from_slice(&[7; 11])),
    ];
    for (name, damage) in damages {
        let dir = damaged_sled("metadata/log_", damage);
        let s = SledStore::open(dir.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Whatever survived is a contiguous run of intact blocks.
        assert!(s.base_height() >= Height(1), "{name}");
        for h in s.base_height().0..=s.latest_height().0 {
            assert_eq!(
                s.block(Height(h)).unwrap(),
                Some(block_at(h, 300)),
                "{name}"
            );
        }
        let next = s.latest_height().0 + 1;
        append_n(&s, next, next);
    }
}

#[test]
fn sled_damaged_heap_is_an_open_error_not_a_hang() {
    // Every slot of every slab is hit (the smallest slot is 64 bytes).
    let damages: [(&str, Damage); 2] = [
        ("bits flipped", |b| {
            for i in (0..b.len()).step_by(61) {
                b[i] ^= 0x20;
            }
        }),
        ("truncated", |b| b.truncate(b.len() / 2)),
    ];
    let options = SledOptions {
        open_timeout: Duration::from_secs(2),
        ..SledOptions::default()
    };
    for (name, damage) in damages {
        let dir = damaged_sled("slabs/", damage);
        // sled panics on the damage and then blocks in its shutdown code; the
        // store gives up on that thread and reports the failure.
        match SledStore::open_with(dir.path(), &options) {
            Err(StorageError::OpenFailed { .. } | StorageError::Sled { .. }) => {}
            Err(e) => panic!("{name}: unexpected error {e}"),
            Ok(_) => panic!("{name}: opened a store with damaged heap files"),
        }
    }
}

#[test]
fn sled_damaged_heap_fails_when_sled_panics_not_at_the_timeout() {
    // With an hour to open, only the panic can end the wait: a hang here is
    // the bug (the node used to sit for the whole timeout before saying why).
    let options = SledOptions {
        open_timeout: Duration::from_secs(3600),
        ..SledOptions::default()
    };
    let dir = damaged_sled("slabs/", |b| b.truncate(b.len() / 2));
    match SledStore::open_with(dir.path(), &options) {
        Err(StorageError::OpenFailed { path, reason }) => {
            assert!(reason.contains("panicked"), "{reason}");
            assert!(path.starts_with(dir.path()), "{}", path.display());
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a store with damaged heap files"),
    }
}

// ---- crash: a writer process aborted mid-stream ----

const CRASH_DIR_ENV: &str = "CONSORT_STORAGE_CRASH_DIR";

/// The writer of [`appends_survive_an_aborted_process`]; does nothing unless
/// started by it.
#[test]
#[ignore = "child process of appends_survive_an_aborted_process"]
fn crash_writer() {
    use std::io::Write as _;
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let s = SledStore::open(Path::new(&dir)).unwrap();
    let from = s.latest_height().0 + 1;
    let mut out = std::io::stdout().lock();
    for h in from..from + 40 {
        let b = block_at(h, 1024);
        s.append(&b, &commit_for(&b), &[]).unwrap();
        writeln!(out, "appended {h}").unwrap();
        out.flush().unwrap();
        // Unflushed WAL records may be lost; they must never come back damaged.
        for e in wal_entries_at(h) {
            s.wal_append(Height(h), &e).unwrap();
        }
    }
    // No destructor runs: sled gets no chance to flush on close.
    std::process::abort();
}

#[test]
fn appends_survive_an_aborted_process() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = 0u64;
    for _ in 0..3 {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "storage::tests::crash_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "the writer must have aborted");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("appended "))
            .filter_map(|h| h.trim().parse::<u64>().ok())
            .max()
            .unwrap_or_else(|| panic!("writer printed no append: {stdout}"));
        assert_eq!(last, acknowledged + 40);
        acknowledged = last;

        let s = SledStore::open(dir.path()).unwrap();
        assert!(s.latest_height().0 >= acknowledged);
        assert_eq!(s.base_height(), Height(1));
        for h in 1..=acknowledged {
            assert_eq!(s.block(Height(h)).unwrap(), Some(block_at(h, 1024)));
        }
        for h in 1..=acknowledged {
            let got = s.wal_entries(Height(h)).unwrap();
            assert_eq!(got[..], wal_entries_at(h)[..got.len()]);
        }
    }
}

// ---- the signing-state file ----

fn full_state() -> PersistedState {
    let ks = keys();
    let id = Hash::digest(b"locked block");
    PersistedState {
        height: Height(12),
        round: Round(3),
        locked: Some((Round(2), id)),
        valid: Some((Round(3), Hash::digest(b"valid block"))),
        last_signed: Some(SignedMessage::Vote(vote(
            &ks[0],
            VoteType::Precommit,
            Height(12),
            Some(id),
        ))),
        votes: vec![
            vote(&ks[0], VoteType::Prevote, Height(12), Some(id)),
            vote(&ks[1], VoteType::Prevote, Height(12), Some(id)),
        ],
        valid_block: None,
    }
}

#[test]
fn signing_state_missing_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let f = SigningStateFile::new(dir.path().join("signing_state"));
    assert_eq!(f.load().unwrap(), None);
}

#[test]
fn signing_state_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let f = SigningStateFile::new(dir.path().join("signing_state"));
    let ks = keys();
    let states = [
        full_state(),
        PersistedState {
            height: Height(1),
            round: Round(0),
            locked: None,
            valid: None,
            last_signed: None,
            votes: vec![],
            valid_block: None,
        },
        PersistedState {
            height: Height(13),
            round: Round(0),
            locked: None,
            valid: Some((Round(0), Hash::digest(b"v"))),
            last_signed: Some(SignedMessage::Proposal(Proposal::new_signed(
                &ks[1],
                "test-chain",
                Height(13),
                Round(1),
                Some(Round(0)),
                Hash::digest(b"v"),
                Timestamp(9),
            ))),
            votes: vec![],
            valid_block: None,
        },
    ];
    for state in &states {
        f.save(state).unwrap();
        assert_eq!(f.load().unwrap().as_ref(), Some(state));
        // A second handle (a restarted node) reads the same.
        let g = SigningStateFile::new(f.path().to_path_buf());
        assert_eq!(g.load().unwrap().as_ref(), Some(state));
    }
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("signing_state")]);
}

#[test]
fn signing_state_keeps_the_valid_block_in_its_own_file() {
    use crate::types::{Block, Header};
    let dir = tempfile::tempdir().unwrap();
    let f = SigningStateFile::new(dir.path().join("signing_state"));
    let ks = keys();
    let block = |tag: &[u8]| {
        let txs = vec![bytes::Bytes::copy_from_slice(tag)];
        std::sync::Arc::new(Block {
            header: Header {
                chain_id: "test-chain".into(),
                height: Height(1),
                time: Timestamp(1),
                last_block_id: None,
                last_commit_hash: Hash::ZERO,
                data_hash: Block::data_hash_of(&txs),
                app_hash: Hash::ZERO,
                validators_hash: Hash::ZERO,
                evidence_hash: Block::evidence_hash_of(&[]),
                proposer: ks[0].public(),
            },
            txs,
            last_commit: None,
            evidence: vec![],
        })
    };
    let a = block(b"a");
    let mut state = full_state();
    state.valid = Some((Round(3), a.id()));
    state.valid_block = Some(a.clone());
    f.save(&state).unwrap();
    let back = SigningStateFile::new(f.path().to_path_buf())
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(back, state);
    // A block file that does not hold the valid block is ignored (liveness only).
    let b = block(b"b");
    let mut other = state.clone();
    other.valid = Some((Round(4), b.id()));
    other.valid_block = None;
    f.save(&other).unwrap();
    let back = SigningStateFile::new(f.path().to_path_buf())
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(back.valid_block, None);
    assert_eq!(back.valid, other.valid);
}

#[test]
fn signing_state_ignores_a_stale_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing_state");
    let f = SigningStateFile::new(path.clone());
    f.save(&full_state()).unwrap();
    // A crash between writing the temporary file and the rename.
    std::fs::write(dir.path().join("signing_state.tmp"), b"half written").unwrap();
    assert_eq!(f.load().unwrap(), Some(full_state()));
    let mut next = full_state();
    next.round = Round(4);
    f.save(&next).unwrap();
    assert_eq!(f.load().unwrap(), Some(next));
}

#[test]
fn signing_state_damage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing_state");
    let f = SigningStateFile::new(path.clone());
    f.save(&full_state()).unwrap();
    let good = std::fs::read(&path).unwrap();

    let corrupt = |bytes: &[u8], case: &str| {
        std::fs::write(&path, bytes).unwrap();
        match f.load() {
            Err(StorageError::Corrupt { what, key, .. }) => {
                assert_eq!(what, "signing state file", "{case}");
                assert!(key.contains("signing_state"), "{case}: {key}");
            }
            other => panic!("{case}: {other:?}"),
        }
    };
    for cut in 0..good.len() {
        corrupt(&good[..cut], &format!("truncated to {cut} bytes"));
    }
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        corrupt(&bad, &format!("bit flipped in byte {i}"));
    }
    let mut longer = good.clone();
    longer.push(0);
    corrupt(&longer, "trailing byte");
    corrupt(&noise(3, 200), "garbage");

    // An intact frame around bytes that are not a signing state.
    let mut not_state = b"CSIGST01".to_vec();
    not_state.extend_from_slice(&super::encoding::frame(&[0xff, 0xff, 0xff]));
    corrupt(&not_state, "undecodable payload");
}

#[test]
fn signing_state_unreadable_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let path = dir.path().join("signing_state");
    std::fs::create_dir(&path).unwrap();
    let f = SigningStateFile::new(path);
    assert!(matches!(f.load(), Err(StorageError::Io { op: "read", .. })));
    assert!(matches!(
        f.save(&full_state()),
        Err(StorageError::Io { .. })
    ));
    // A save into a directory that does not exist fails and says where.
    let f = SigningStateFile::new(dir.path().join("missing").join("signing_state"));
    let err = f.save(&full_state()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

// ---- latency ----

#[test]
fn fsync_latency_probe() {
    let dir = tempfile::tempdir().unwrap();
    let l = measure_fsync_latency(dir.path(), 5).unwrap();
    assert_eq!(l.samples().len(), 5);
    assert!(l.min() <= l.median() && l.median() <= l.max());
    assert!(l.samples().windows(2).all(|w| w[0] <= w[1]));
    // The scratch file is gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(
        measure_fsync_latency(dir.path(), 0)
            .unwrap()
            .samples()
            .len(),
        1
    );
}

/// Appends of ~1 KiB blocks to a `SledStore`, each durable before the next: prints
/// the latency distribution next to the disk's bare fsync latency, measured just
/// before and after (on a shared disk it drifts). Run with
/// `cargo test --lib sled_append_latency -- --ignored --nocapture`; set
/// `CONSORT_BENCH_DIR` to measure another disk, `CONSORT_BENCH_TX_BYTES` and
/// `CONSORT_BENCH_BLOCKS` for other block sizes and counts.
#[test]
#[ignore = "measurement, not a check"]
fn sled_append_latency() {
    let dir =
        tempfile::tempdir_in(std::env::var_os("CONSORT_BENCH_DIR").unwrap_or(".".into())).unwrap();
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let tx_bytes = env("CONSORT_BENCH_TX_BYTES", 1024) as usize;
    let n = env("CONSORT_BENCH_BLOCKS", 3_000);
    let fsync_before = measure_fsync_latency(dir.path(), 200).unwrap();
    let s = SledStore::open(&dir.path().join("db")).unwrap();
    let blocks: Vec<(Block, Commit)> = (1..=n)
        .map(|h| {
            let b = block_at(h, tx_bytes);
            let c = commit_for(&b);
            (b, c)
        })
        .collect();
    let record = Wire::encode(&blocks[0].0).len() + Wire::encode(&blocks[0].1).len();
    let mut lat: Vec<Duration> = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for (b, c) in &blocks {
        let t = Instant::now();
        s.append(b, c, &[]).unwrap();
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    let fsync_after = measure_fsync_latency(dir.path(), 200).unwrap();
    let early: Vec<Duration> = lat[..lat.len().min(100)].to_vec();
    lat.sort();
    let q = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    let mut early_sorted = early;
    early_sorted.sort();
    println!(
        "sled append, {n} blocks of ~{record} B (block + commit): median {:?}, p90 {:?}, p99 {:?}, max {:?}; first 100 median {:?}; {:.0} appends/s; bare fsync median {:?} before, {:?} after; {} bytes on disk",
        q(&lat, 0.5),
        q(&lat, 0.9),
        q(&lat, 0.99),
        q(&lat, 1.0),
        q(&early_sorted, 0.5),
        n as f64 / total.as_secs_f64(),
        fsync_before.median(),
        fsync_after.median(),
        s.size_on_disk().unwrap(),
    );
}
