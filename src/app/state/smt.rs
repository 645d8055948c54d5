//! The state commitment: a compact sparse Merkle tree over SHA-256 key hashes.
//!
//! Definition (canonical for a set of entries, whatever order they were
//! written in): every entry is a leaf at the path given by the bits of its key
//! hash `kh`, most significant first. For a set `S` of leaves under a node at
//! depth `d`:
//!
//! - `root(∅) = EMPTY` (32 zero bytes);
//! - `root({leaf}) = H(0x00 ‖ kh ‖ H(value))` — a lone leaf sits as high as it can;
//! - otherwise `H(0x01 ‖ root(S₀, d+1) ‖ root(S₁, d+1))`, splitting `S` on bit `d`.
//!
//! A proof for a key walks down its path and lists the sibling hashes until it
//! reaches a lone leaf or an empty subtree; it shows presence (the leaf has the
//! key) or absence (another key's leaf, or empty) with the same code.
//!
//! The node keeps the top [`BUCKET_BITS`] levels in memory as a dense array of
//! bucket roots (with leaf counts, which the compaction rule needs); a bucket's
//! own subtree is recomputed from its leaves when one of them changes. A change
//! costs `BUCKET_BITS` hashes up the top plus one pass over its bucket, which
//! holds `n / 2^16` entries on average (about 15 at a million entries).

use crate::types::Hash;

/// Levels of the tree kept in memory.
pub const BUCKET_BITS: u32 = 16;
/// Number of buckets.
pub const BUCKETS: usize = 1 << BUCKET_BITS;

/// Hash of an empty subtree.
pub const EMPTY: Hash = Hash::ZERO;

/// Hash of a leaf.
pub fn leaf_hash(kh: &Hash, value_hash: &Hash) -> Hash {
    Hash::digest_parts(&[&[0u8], kh.as_bytes(), value_hash.as_bytes()])
}

/// Hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(&[&[1u8], left.as_bytes(), right.as_bytes()])
}

/// Bit `i` (0 = most significant) of a key hash.
pub fn bit(kh: &Hash, i: u32) -> bool {
    let byte = kh.0[(i / 8) as usize];
    byte & (0x80 >> (i % 8)) != 0
}

/// The bucket of a key hash: its first [`BUCKET_BITS`] bits.
pub fn bucket_of(kh: &Hash) -> usize {
    ((kh.0[0] as usize) << 8) | kh.0[1] as usize
}

/// A leaf: key hash and the hash of its leaf node.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// SHA-256 of the key.
    pub kh: Hash,
    /// `leaf_hash(kh, H(value))`.
    pub hash: Hash,
}

/// Root of the subtree at `depth` holding `leaves` (sorted by key hash, all
/// sharing the first `depth` bits).
pub fn subtree_root(leaves: &[Leaf], depth: u32) -> Hash {
    match leaves.len() {
        0 => EMPTY,
        1 => leaves[0].hash,
        _ => {
            // Leaves are sorted, so the ones with bit `depth` unset come first.
            let split = leaves.partition_point(|l| !bit(&l.kh, depth));
            node_hash(
                &subtree_root(&leaves[..split], depth + 1),
                &subtree_root(&leaves[split..], depth + 1),
            )
        }
    }
}

/// A node of the in-memory top: subtree root and number of leaves below.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct TopNode {
    /// The subtree's root.
    pub hash: Hash,
    /// Leaves below it.
    pub count: u64,
}

fn combine(l: &TopNode, r: &TopNode) -> TopNode {
    let count = l.count + r.count;
    let hash = match (l.count, r.count) {
        (0, 0) => EMPTY,
        // A lone leaf floats up: the node is that leaf.
        (1, 0) => l.hash,
        (0, 1) => r.hash,
        _ => node_hash(&l.hash, &r.hash),
    };
    TopNode { hash, count }
}

/// The top [`BUCKET_BITS`] levels: a complete binary tree stored as an array
/// (node `i` has children `2i` and `2i+1`; buckets are `BUCKETS..2*BUCKETS`).
#[derive(Clone)]
pub struct TopTree {
    nodes: Vec<TopNode>,
}

impl std::fmt::Debug for TopTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TopTree(root {}, {} leaves)",
            self.root().short(),
            self.count()
        )
    }
}

impl Default for TopTree {
    fn default() -> TopTree {
        TopTree::new()
    }
}

impl TopTree {
    /// The tree of the empty state.
    pub fn new() -> TopTree {
        TopTree {
            nodes: vec![TopNode::default(); 2 * BUCKETS],
        }
    }

    /// Builds the top from every bucket's (root, count), bottom-up.
    pub fn from_buckets(buckets: &[TopNode]) -> Option<TopTree> {
        if buckets.len() != BUCKETS {
            return None;
        }
        let mut t = TopTree::new();
        t.nodes[BUCKETS..].copy_from_slice(buckets);
        for i in (1..BUCKETS).rev() {
            t.nodes[i] = combine(&t.nodes[2 * i], &t.nodes[2 * i + 1]);
        }
        Some(t)
    }

    /// The state root.
    pub fn root(&self) -> Hash {
        self.nodes[1].hash
    }

    /// Number of leaves.
    pub fn count(&self) -> u64 {
        self.nodes[1].count
    }

    /// A bucket's (root, count).
    pub fn bucket(&self, b: usize) -> TopNode {
        self.nodes[BUCKETS + b]
    }

    /// All buckets' (root, count), for snapshots.
    pub fn buckets(&self) -> &[TopNode] {
        &self.nodes[BUCKETS..]
    }

    /// The root the tree would have with some buckets replaced, without changing
    /// it: the path of each changed bucket is recomputed in a side table.
    pub fn root_with(&self, changed: &std::collections::BTreeMap<usize, TopNode>) -> Hash {
        if changed.is_empty() {
            return self.root();
        }
        let mut side: std::collections::HashMap<usize, TopNode> =
            changed.iter().map(|(b, n)| (BUCKETS + b, *n)).collect();
        let mut level: Vec<usize> = changed.keys().map(|b| BUCKETS + b).collect();
        while level.first().is_some_and(|i| *i > 1) {
            let mut parents: Vec<usize> = level.iter().map(|i| i / 2).collect();
            parents.dedup();
            for p in &parents {
                let l = side.get(&(2 * p)).copied().unwrap_or(self.nodes[2 * p]);
                let r = side
                    .get(&(2 * p + 1))
                    .copied()
                    .unwrap_or(self.nodes[2 * p + 1]);
                side.insert(*p, combine(&l, &r));
            }
            level = parents;
        }
        side.get(&1).map_or(self.root(), |n| n.hash)
    }

    /// Replaces bucket `b` and updates its ancestors.
    pub fn set_bucket(&mut self, b: usize, node: TopNode) {
        let mut i = BUCKETS + b;
        self.nodes[i] = node;
        while i > 1 {
            i /= 2;
            self.nodes[i] = combine(&self.nodes[2 * i], &self.nodes[2 * i + 1]);
        }
    }
}

/// What a proof ends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// An empty subtree: the key is absent.
    Empty,
    /// A lone leaf: the key itself (presence) or another key (absence).
    Leaf {
        /// Key hash of the leaf found.
        kh: Hash,
        /// Hash of its value.
        value_hash: Hash,
    },
}

/// Proof of one key's presence or absence under a state root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateProof {
    /// Sibling subtree roots from the root down the key's path.
    pub siblings: Vec<Hash>,
    /// Where the walk ended.
    pub terminal: Terminal,
}

/// What a proof shows about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proven {
    /// The key is present with a value of this hash.
    Present(Hash),
    /// The key is absent.
    Absent,
}

impl StateProof {
    /// Checks the proof for `kh` against `root`; returns what it shows, or
    /// `None` if it does not lead to `root`.
    pub fn verify(&self, kh: &Hash, root: &Hash) -> Option<Proven> {
        let depth = self.siblings.len() as u32;
        if depth > 256 {
            return None;
        }
        let (mut acc, proven) = match &self.terminal {
            Terminal::Empty => (EMPTY, Proven::Absent),
            Terminal::Leaf {
                kh: found,
                value_hash,
            } => {
                // The leaf found must lie on the key's path down to `depth`.
                if (0..depth).any(|i| bit(found, i) != bit(kh, i)) {
                    return None;
                }
                let p = if found == kh {
                    Proven::Present(*value_hash)
                } else {
                    Proven::Absent
                };
                (leaf_hash(found, value_hash), p)
            }
        };
        // A lone leaf or an empty subtree would have floated up: the lowest
        // sibling must make its parent a real inner node.
        if let Some(last) = self.siblings.last() {
            if *last == EMPTY && matches!(self.terminal, Terminal::Leaf { .. }) {
                return None;
            }
        }
        for (i, s) in self.siblings.iter().enumerate().rev() {
            acc = if bit(kh, i as u32) {
                node_hash(s, &acc)
            } else {
                node_hash(&acc, s)
            };
        }
        (acc == *root).then_some(proven)
    }
}

/// Builds the proof for `kh`. `leaves_of(b)` returns bucket `b`'s leaves sorted
/// by key hash, each with its value hash.
pub fn prove<F>(top: &TopTree, kh: &Hash, leaves_of: F) -> StateProof
where
    F: Fn(usize) -> Vec<(Leaf, Hash)>,
{
    let mut siblings = Vec::new();
    // Walk the top levels; stop where the lone-leaf rule collapsed the path.
    let mut i = 1usize;
    for d in 0..BUCKET_BITS {
        if top.nodes[i].count <= 1 {
            return collapsed(top, i, siblings, &leaves_of);
        }
        let next = 2 * i + usize::from(bit(kh, d));
        siblings.push(top.nodes[next ^ 1].hash);
        i = next;
    }
    if top.nodes[i].count <= 1 {
        return collapsed(top, i, siblings, &leaves_of);
    }
    // Inside the bucket.
    let mut leaves = leaves_of(i - BUCKETS);
    let mut depth = BUCKET_BITS;
    loop {
        match leaves.len() {
            0 => {
                return StateProof {
                    siblings,
                    terminal: Terminal::Empty,
                };
            }
            1 => {
                return StateProof {
                    siblings,
                    terminal: Terminal::Leaf {
                        kh: leaves[0].0.kh,
                        value_hash: leaves[0].1,
                    },
                };
            }
            _ => {
                let split = leaves.partition_point(|(l, _)| !bit(&l.kh, depth));
                let side: Vec<Leaf> = leaves.iter().map(|(l, _)| *l).collect();
                let (ls, rs) = side.split_at(split);
                if bit(kh, depth) {
                    siblings.push(subtree_root(ls, depth + 1));
                    leaves.drain(..split);
                } else {
                    siblings.push(subtree_root(rs, depth + 1));
                    leaves.truncate(split);
                }
                depth += 1;
            }
        }
    }
}

/// Ends a proof at top node `i`, which holds no leaf or one lone leaf.
fn collapsed<F>(top: &TopTree, mut i: usize, siblings: Vec<Hash>, leaves_of: &F) -> StateProof
where
    F: Fn(usize) -> Vec<(Leaf, Hash)>,
{
    if top.nodes[i].count == 0 {
        return StateProof {
            siblings,
            terminal: Terminal::Empty,
        };
    }
    // Follow the non-empty side down to the bucket holding the lone leaf.
    while i < BUCKETS {
        i = if top.nodes[2 * i].count > 0 {
            2 * i
        } else {
            2 * i + 1
        };
    }
    let want = top.nodes[i].hash;
    let terminal = leaves_of(i - BUCKETS)
        .into_iter()
        .find(|(l, _)| l.hash == want)
        .map_or(Terminal::Empty, |(l, vh)| Terminal::Leaf {
            kh: l.kh,
            value_hash: vh,
        });
    StateProof { siblings, terminal }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> (Hash, Hash) {
        (
            Hash::digest(&i.to_be_bytes()),
            Hash::digest(&(i * 7).to_be_bytes()),
        )
    }

    /// Reference: the root straight from the definition, over all leaves.
    fn reference_root(entries: &[(Hash, Hash)]) -> Hash {
        let mut leaves: Vec<Leaf> = entries
            .iter()
            .map(|(kh, vh)| Leaf {
                kh: *kh,
                hash: leaf_hash(kh, vh),
            })
            .collect();
        leaves.sort_by_key(|l| l.kh);
        subtree_root(&leaves, 0)
    }

    fn top_of(entries: &[(Hash, Hash)]) -> (TopTree, Vec<Vec<(Leaf, Hash)>>) {
        let mut per: Vec<Vec<(Leaf, Hash)>> = vec![Vec::new(); BUCKETS];
        for (kh, vh) in entries {
            per[bucket_of(kh)].push((
                Leaf {
                    kh: *kh,
                    hash: leaf_hash(kh, vh),
                },
                *vh,
            ));
        }
        let mut nodes = vec![TopNode::default(); BUCKETS];
        for (b, ls) in per.iter_mut().enumerate() {
            ls.sort_by_key(|(l, _)| l.kh);
            let leaves: Vec<Leaf> = ls.iter().map(|(l, _)| *l).collect();
            nodes[b] = TopNode {
                hash: subtree_root(&leaves, BUCKET_BITS),
                count: leaves.len() as u64,
            };
        }
        (TopTree::from_buckets(&nodes).unwrap(), per)
    }

    #[test]
    fn bucketed_root_equals_the_definition() {
        for n in [0u32, 1, 2, 3, 10, 500] {
            let entries: Vec<(Hash, Hash)> = (0..n).map(entry).collect();
            let (top, _) = top_of(&entries);
            assert_eq!(top.root(), reference_root(&entries), "n={n}");
            assert_eq!(top.count(), n as u64);
        }
    }

    #[test]
    fn incremental_update_matches_rebuild() {
        let entries: Vec<(Hash, Hash)> = (0..300).map(entry).collect();
        let (mut top, mut per) = top_of(&entries[..200]);
        for e in &entries[200..] {
            let b = bucket_of(&e.0);
            per[b].push((
                Leaf {
                    kh: e.0,
                    hash: leaf_hash(&e.0, &e.1),
                },
                e.1,
            ));
            per[b].sort_by_key(|(l, _)| l.kh);
            let leaves: Vec<Leaf> = per[b].iter().map(|(l, _)| *l).collect();
            top.set_bucket(
                b,
                TopNode {
                    hash: subtree_root(&leaves, BUCKET_BITS),
                    count: leaves.len() as u64,
                },
            );
        }
        assert_eq!(top.root(), reference_root(&entries));
    }

    #[test]
    fn root_with_matches_applying() {
        let entries: Vec<(Hash, Hash)> = (0..100).map(entry).collect();
        let (top, _) = top_of(&entries);
        let mut changed = std::collections::BTreeMap::new();
        let mut applied = top.clone();
        for b in [0usize, 1, 777, BUCKETS - 1] {
            let n = TopNode {
                hash: Hash::digest(&b.to_be_bytes()),
                count: 2,
            };
            changed.insert(b, n);
            applied.set_bucket(b, n);
        }
        assert_eq!(top.root_with(&changed), applied.root());
        assert_ne!(top.root(), applied.root());
        assert_eq!(top.root_with(&Default::default()), top.root());
    }

    #[test]
    fn proofs_of_presence_and_absence() {
        for n in [1u32, 2, 5, 200] {
            let entries: Vec<(Hash, Hash)> = (0..n).map(entry).collect();
            let (top, per) = top_of(&entries);
            let root = top.root();
            for (kh, vh) in &entries {
                let p = prove(&top, kh, |b| per[b].clone());
                assert_eq!(p.verify(kh, &root), Some(Proven::Present(*vh)), "n={n}");
                // A different value or root does not verify as that value.
                let mut bad = p.clone();
                if let Terminal::Leaf { value_hash, .. } = &mut bad.terminal {
                    *value_hash = Hash::digest(b"forged");
                }
                assert_ne!(bad.verify(kh, &root), Some(Proven::Present(*vh)));
                assert_eq!(p.verify(kh, &Hash::digest(b"other root")), None);
            }
            for i in 1000..1020u32 {
                let kh = Hash::digest(&i.to_be_bytes());
                let p = prove(&top, &kh, |b| per[b].clone());
                assert_eq!(p.verify(&kh, &root), Some(Proven::Absent), "n={n} i={i}");
            }
        }
    }
}
