//! The snapshot format: a manifest and chunks that can each be checked alone.
//!
//! A snapshot of the state at height h is cut into chunks along the buckets of
//! the state tree ([`crate::app::state::smt`]): chunk i holds every entry of
//! buckets `first..end`, in key-hash order. The manifest lists every bucket's
//! (root, count): recomputing the top of the tree from them must give the state
//! root that the header of h carries, signed by the validators. A chunk is then
//! checked on arrival, before anything is written, by recomputing its buckets'
//! roots and counts and comparing them with the manifest.

use bytes::Bytes;
use prost::Message;

use crate::app::state::smt::{self, BUCKET_BITS, BUCKETS, Leaf, TopNode, TopTree};
use crate::app::state::{AsLeaf, Entry};
use crate::pb;
use crate::types::{Hash, Height};

/// Version of this format.
pub const FORMAT: u32 = 1;

/// Why a manifest or chunk is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not decodable.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The manifest's buckets do not give the signed root.
    #[error("manifest buckets give root {got}, the signed header says {expected}")]
    RootMismatch {
        /// The signed root.
        expected: Hash,
        /// What the manifest leads to.
        got: Hash,
    },
    /// A chunk does not match what the manifest commits to.
    #[error("chunk {index}: {reason}")]
    BadChunk {
        /// Chunk index.
        index: u32,
        /// What is wrong.
        reason: String,
    },
}

/// One chunk's place in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRange {
    /// First bucket.
    pub first: u32,
    /// One past the last bucket.
    pub end: u32,
    /// SHA-256 of the encoded chunk.
    pub hash: Hash,
}

/// What a snapshot holds and how it is cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Height of the state.
    pub height: Height,
    /// Format version.
    pub format: u32,
    /// The state root.
    pub state_root: Hash,
    /// Every bucket's (root, count).
    pub buckets: Vec<TopNode>,
    /// The chunks, covering every bucket in order.
    pub chunks: Vec<ChunkRange>,
}

/// A decoded chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// First bucket.
    pub first: u32,
    /// One past the last bucket.
    pub end: u32,
    /// Entries in key-hash order, with their key hashes.
    pub entries: Vec<(Hash, Entry)>,
    /// Each bucket's leaves (`first..end`), as checked against the manifest:
    /// a restore keeps them so that it need not read the state back to build
    /// the tree.
    pub leaves: Vec<Vec<Leaf>>,
}

fn malformed(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Malformed(e.to_string())
}

impl Manifest {
    /// Protobuf form.
    pub fn to_proto(&self) -> pb::SnapshotManifest {
        pb::SnapshotManifest {
            height: self.height.0,
            format: self.format,
            state_root: Bytes::copy_from_slice(self.state_root.as_bytes()),
            buckets: self
                .buckets
                .iter()
                .map(|b| pb::BucketNode {
                    root: Bytes::copy_from_slice(b.hash.as_bytes()),
                    count: b.count,
                })
                .collect(),
            chunks: self
                .chunks
                .iter()
                .map(|c| pb::ChunkRange {
                    first_bucket: c.first,
                    end_bucket: c.end,
                    hash: Bytes::copy_from_slice(c.hash.as_bytes()),
                })
                .collect(),
        }
    }

    /// Decodes and checks the shape (not the root: see [`Manifest::verify`]).
    pub fn from_proto(p: pb::SnapshotManifest) -> Result<Manifest, SnapshotError> {
        if p.buckets.len() != BUCKETS {
            return Err(malformed(format!(
                "{} buckets, expected {BUCKETS}",
                p.buckets.len()
            )));
        }
        if p.chunks.is_empty() || p.chunks.len() > BUCKETS {
            return Err(malformed(format!("{} chunks", p.chunks.len())));
        }
        let buckets = p
            .buckets
            .iter()
            .map(|b| {
                Ok(TopNode {
                    hash: Hash::from_slice(&b.root).map_err(malformed)?,
                    count: b.count,
                })
            })
            .collect::<Result<Vec<_>, SnapshotError>>()?;
        let chunks = p
            .chunks
            .iter()
            .map(|c| {
                Ok(ChunkRange {
                    first: c.first_bucket,
                    end: c.end_bucket,
                    hash: Hash::from_slice(&c.hash).map_err(malformed)?,
                })
            })
            .collect::<Result<Vec<_>, SnapshotError>>()?;
        let mut next = 0u32;
        for c in &chunks {
            if c.first != next || c.end <= c.first {
                return Err(malformed("chunks do not cover the buckets in order"));
            }
            next = c.end;
        }
        if next as usize != BUCKETS {
            return Err(malformed("chunks do not cover every bucket"));
        }
        Ok(Manifest {
            height: Height(p.height),
            format: p.format,
            state_root: Hash::from_slice(&p.state_root).map_err(malformed)?,
            buckets,
            chunks,
        })
    }

    /// Checks the bucket table against the signed state root.
    pub fn verify(&self, signed_root: &Hash) -> Result<(), SnapshotError> {
        if self.format != FORMAT {
            return Err(malformed(format!(
                "format {} (this node reads {FORMAT})",
                self.format
            )));
        }
        let top = TopTree::from_buckets(&self.buckets).ok_or_else(|| malformed("bucket count"))?;
        if top.root() != *signed_root || self.state_root != *signed_root {
            return Err(SnapshotError::RootMismatch {
                expected: *signed_root,
                got: top.root(),
            });
        }
        Ok(())
    }

    /// Identifies the manifest (and so the snapshot).
    pub fn hash(&self) -> Hash {
        Hash::digest(&self.to_proto().encode_to_vec())
    }

    /// Number of entries.
    pub fn entries(&self) -> u64 {
        self.buckets.iter().map(|b| b.count).sum()
    }
}

/// Encodes a chunk.
pub fn encode_chunk(first: u32, end: u32, entries: &[(Hash, Entry)]) -> Vec<u8> {
    pb::SnapshotChunk {
        first_bucket: first,
        end_bucket: end,
        entries: entries
            .iter()
            .map(|(_, e)| pb::StateEntry {
                key: Bytes::copy_from_slice(&e.key),
                value: Bytes::copy_from_slice(&e.value),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Checks chunk `index` against the (verified) manifest and decodes it. Nothing
/// in it is trusted before this returns.
pub fn verify_chunk(manifest: &Manifest, index: u32, bytes: &[u8]) -> Result<Chunk, SnapshotError> {
    let bad = |reason: String| SnapshotError::BadChunk { index, reason };
    let range = manifest
        .chunks
        .get(index as usize)
        .ok_or_else(|| bad("no such chunk".into()))?;
    if Hash::digest(bytes) != range.hash {
        return Err(bad("hash differs from the manifest".into()));
    }
    let p = pb::SnapshotChunk::decode(bytes).map_err(|e| bad(e.to_string()))?;
    if p.first_bucket != range.first || p.end_bucket != range.end {
        return Err(bad("bucket range differs from the manifest".into()));
    }
    let mut entries: Vec<(Hash, Entry)> = Vec::with_capacity(p.entries.len());
    for e in p.entries {
        let entry = Entry {
            key: e.key.to_vec(),
            value: e.value.to_vec(),
        };
        let kh = entry.kh();
        let b = smt::bucket_of(&kh) as u32;
        if b < range.first || b >= range.end {
            return Err(bad(format!("entry in bucket {b}, outside the chunk")));
        }
        if entries.last().is_some_and(|(last, _)| *last >= kh) {
            return Err(bad("entries not in strict key-hash order".into()));
        }
        entries.push((kh, entry));
    }
    // Recompute each bucket's root and count.
    let mut i = 0;
    let mut leaves = Vec::with_capacity(range.end.saturating_sub(range.first) as usize);
    for b in range.first..range.end {
        let start = i;
        while i < entries.len() && smt::bucket_of(&entries[i].0) as u32 == b {
            i += 1;
        }
        let bucket: Vec<Leaf> = entries[start..i]
            .iter()
            .map(|(kh, e)| e.leaf(*kh))
            .collect();
        let node = TopNode {
            hash: smt::subtree_root(&bucket, BUCKET_BITS),
            count: bucket.len() as u64,
        };
        if node != manifest.buckets[b as usize] {
            return Err(bad(format!("bucket {b} does not match the manifest")));
        }
        leaves.push(bucket);
    }
    Ok(Chunk {
        first: range.first,
        end: range.end,
        entries,
        leaves,
    })
}

/// Cuts the state, read in key-hash order a page at a time with
/// `next_page(from)` (entries and whether more follow), into chunks of about
/// `target_bytes` that end at bucket boundaries, handing each encoded chunk to
/// `emit`. Returns the chunk ranges.
pub fn cut_chunks<F, E>(
    target_bytes: usize,
    mut next_page: F,
    mut emit: E,
) -> Result<Vec<ChunkRange>, SnapshotError>
where
    F: FnMut(&Hash) -> Result<(Vec<(Hash, Entry)>, bool), SnapshotError>,
    E: FnMut(u32, &[u8]) -> Result<(), SnapshotError>,
{
    let mut ranges = Vec::new();
    let mut first = 0u32;
    let mut pending: Vec<(Hash, Entry)> = Vec::new();
    let mut size = 0usize;
    let mut from = Hash::ZERO;
    let mut close = |first: &mut u32,
                     end: u32,
                     pending: &mut Vec<(Hash, Entry)>|
     -> Result<(), SnapshotError> {
        let bytes = encode_chunk(*first, end, pending);
        emit(ranges.len() as u32, &bytes)?;
        ranges.push(ChunkRange {
            first: *first,
            end,
            hash: Hash::digest(&bytes),
        });
        *first = end;
        pending.clear();
        Ok(())
    };
    loop {
        let (page, more) = next_page(&from)?;
        for (kh, e) in page {
            let b = smt::bucket_of(&kh) as u32;
            if size >= target_bytes {
                if let Some(last) = pending.last().map(|(k, _)| smt::bucket_of(k) as u32) {
                    if b > last {
                        close(&mut first, last + 1, &mut pending)?;
                        size = 0;
                    }
                }
            }
            size += e.key.len() + e.value.len() + 8;
            from = crate::app::state::committed::next_hash(&kh);
            pending.push((kh, e));
        }
        if !more || from == Hash::ZERO {
            break;
        }
    }
    close(&mut first, BUCKETS as u32, &mut pending)?;
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::state::{CommittedState, MemBackend, StateBackend};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn state(n: u32) -> CommittedState {
        let backend: Arc<dyn StateBackend> = Arc::new(MemBackend::default());
        let s = CommittedState::open(backend).unwrap();
        let changes: BTreeMap<Hash, Option<Entry>> = (0..n)
            .map(|i| {
                let e = Entry {
                    key: format!("k{i}").into_bytes(),
                    value: vec![i as u8; 40],
                };
                (e.kh(), Some(e))
            })
            .collect();
        let p = s.prepare(changes).unwrap();
        s.apply(Height(5), &p).unwrap();
        s
    }

    fn snapshot(s: &CommittedState, target: usize) -> (Manifest, Vec<Vec<u8>>) {
        let mut chunks = Vec::new();
        let ranges = cut_chunks(
            target,
            |from| {
                let page = s.backend().range(from, 100).map_err(malformed)?;
                let more = page.len() == 100;
                Ok((page, more))
            },
            |_, bytes| {
                chunks.push(bytes.to_vec());
                Ok(())
            },
        )
        .unwrap();
        let (h, root) = s.committed();
        let m = Manifest {
            height: h,
            format: FORMAT,
            state_root: root,
            buckets: s.bucket_nodes(),
            chunks: ranges,
        };
        (m, chunks)
    }

    #[test]
    fn every_chunk_verifies_and_restores_the_state() {
        let s = state(3000);
        let (m, chunks) = snapshot(&s, 16 * 1024);
        assert!(chunks.len() > 3);
        let decoded = Manifest::from_proto(m.to_proto()).unwrap();
        assert_eq!(decoded, m);
        m.verify(&s.committed().1).unwrap();
        assert_eq!(m.entries(), 3000);
        let restored: Arc<dyn StateBackend> = Arc::new(MemBackend::default());
        for (i, c) in chunks.iter().enumerate() {
            let chunk = verify_chunk(&m, i as u32, c).unwrap();
            let changes: Vec<_> = chunk
                .entries
                .into_iter()
                .map(|(k, e)| (k, Some(e)))
                .collect();
            restored.apply(Height(5), &changes).unwrap();
        }
        let again = CommittedState::open(restored).unwrap();
        assert_eq!(again.committed(), s.committed());
    }

    #[test]
    fn tampering_is_caught() {
        let s = state(500);
        let (m, chunks) = snapshot(&s, 4 * 1024);
        // A forged root, or a manifest whose buckets do not give the root.
        assert!(matches!(
            m.verify(&Hash::digest(b"x")),
            Err(SnapshotError::RootMismatch { .. })
        ));
        let mut forged = m.clone();
        forged.buckets[7].count += 1;
        assert!(forged.verify(&s.committed().1).is_err());
        // A chunk with a changed value, re-hashed into a manifest that still has
        // the honest buckets: the bucket check catches it.
        let mut p = pb::SnapshotChunk::decode(chunks[1].as_slice()).unwrap();
        let mut v = p.entries[0].value.to_vec();
        v[0] ^= 1;
        p.entries[0].value = v.into();
        let bytes = p.encode_to_vec();
        let mut m2 = m.clone();
        m2.chunks[1].hash = Hash::digest(&bytes);
        assert!(matches!(
            verify_chunk(&m2, 1, &bytes),
            Err(SnapshotError::BadChunk { index: 1, .. })
        ));
        // Wrong chunk for the index, truncated bytes, a missing entry.
        assert!(verify_chunk(&m, 2, &chunks[1]).is_err());
        assert!(verify_chunk(&m, 1, &chunks[1][..chunks[1].len() - 1]).is_err());
        let mut p = pb::SnapshotChunk::decode(chunks[0].as_slice()).unwrap();
        p.entries.pop();
        let bytes = p.encode_to_vec();
        let mut m3 = m.clone();
        m3.chunks[0].hash = Hash::digest(&bytes);
        assert!(verify_chunk(&m3, 0, &bytes).is_err());
    }
}
