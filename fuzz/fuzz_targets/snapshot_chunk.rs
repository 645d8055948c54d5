//! Snapshot data from a state-sync server. Mode 0: a chunk checked against a
//! manifest whose chunk hash is made to match the input, so that the decoder
//! behind the hash check is reached; whatever verifies lies inside its chunk's
//! buckets, in strict key-hash order. Mode 1: a manifest as protobuf bytes;
//! decoding and checking it against a root never panic, and a decoded manifest
//! re-encodes to the same value.
#![no_main]

use std::cell::RefCell;

use consort::app::state::smt::{self, BUCKETS, TopNode};
use consort::pb;
use consort::sync::snapshot::{ChunkRange, FORMAT, Manifest, verify_chunk};
use consort::types::{Hash, Height};
use libfuzzer_sys::fuzz_target;
use prost::Message;

thread_local! {
    // The bucket table of an empty state, reused across runs: building 65536
    // nodes per input would dominate the run time.
    static EMPTY_BUCKETS: RefCell<Vec<TopNode>> = RefCell::new(vec![
        TopNode { hash: smt::subtree_root(&[], smt::BUCKET_BITS), count: 0 };
        BUCKETS
    ]);
}

fn chunk_mode(data: &[u8]) {
    let mut r = consort_fuzz::Bytes(data);
    let mut cuts: Vec<u32> = (0..r.u8() % 4)
        .map(|_| u32::from(r.u16()))
        .filter(|c| *c > 0)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let index = u32::from(r.u8());
    let bytes = r.0;
    let mut bounds = vec![0u32];
    bounds.extend(cuts);
    bounds.push(BUCKETS as u32);
    let index = index % (bounds.len() as u32 - 1);
    let chunks: Vec<ChunkRange> = bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| ChunkRange {
            first: w[0],
            end: w[1],
            hash: if i as u32 == index {
                Hash::digest(bytes)
            } else {
                Hash::ZERO
            },
        })
        .collect();
    let buckets = EMPTY_BUCKETS.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let manifest = Manifest {
        height: Height(7),
        format: FORMAT,
        state_root: Hash::ZERO,
        buckets,
        chunks,
    };
    if let Ok(chunk) = verify_chunk(&manifest, index, bytes) {
        let range = &manifest.chunks[index as usize];
        assert_eq!((chunk.first, chunk.end), (range.first, range.end));
        for w in chunk.entries.windows(2) {
            assert!(w[0].0 < w[1].0, "entries out of order");
        }
        for (kh, e) in &chunk.entries {
            assert_eq!(*kh, e.kh(), "key hash does not match the key");
            let b = smt::bucket_of(kh) as u32;
            assert!(range.first <= b && b < range.end, "entry outside the chunk");
        }
    }
    // Every index, also past the end, is refused without a panic.
    let _ = verify_chunk(
        &manifest,
        index.wrapping_add(u32::from(bytes.len() as u8)),
        bytes,
    );
    EMPTY_BUCKETS.with(|b| *b.borrow_mut() = manifest.buckets);
}

fn manifest_mode(data: &[u8]) {
    let Ok(p) = pb::SnapshotManifest::decode(data) else {
        return;
    };
    if let Ok(m) = Manifest::from_proto(p) {
        let again = Manifest::from_proto(m.to_proto()).expect("a decoded manifest re-decodes");
        assert_eq!(again, m);
        let _ = m.verify(&m.state_root);
        let _ = m.entries();
        let _ = m.hash();
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 0 => chunk_mode(rest),
        Some((_, rest)) => manifest_mode(rest),
        None => {}
    }
});
