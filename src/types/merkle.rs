//! Binary Merkle trees over ordered lists (RFC 9162 shape): the root of a block's
//! transactions, and proofs that one transaction is in a block.

use super::Hash;

/// Hash of a leaf: domain-separated from inner nodes so that a leaf can never pass
/// for a subtree.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash::digest_parts(&[&[0u8], data])
}

/// Hash of an inner node.
pub fn inner_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(&[&[1u8], left.as_bytes(), right.as_bytes()])
}

/// Root of the tree whose leaves are `leaves` (already leaf-hashed). The empty
/// tree's root is the hash of no bytes.
pub fn root_of_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::digest(&[]),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            inner_hash(
                &root_of_leaf_hashes(&leaves[..k]),
                &root_of_leaf_hashes(&leaves[k..]),
            )
        }
    }
}

/// Root of the tree over raw items.
pub fn root<T: AsRef<[u8]>>(items: &[T]) -> Hash {
    let leaves: Vec<Hash> = items.iter().map(|i| leaf_hash(i.as_ref())).collect();
    root_of_leaf_hashes(&leaves)
}

/// The largest power of two strictly less than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Proof that the leaf at `index` of a tree of `total` leaves is under a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleProof {
    /// Position of the leaf.
    pub index: u64,
    /// Number of leaves.
    pub total: u64,
    /// Sibling hashes from the leaf up to the root.
    pub siblings: Vec<Hash>,
}

impl MerkleProof {
    /// Proof for `index` in the tree over `leaves` (leaf hashes). `None` if out of
    /// range.
    pub fn build(leaves: &[Hash], index: usize) -> Option<MerkleProof> {
        if index >= leaves.len() {
            return None;
        }
        let mut siblings = Vec::new();
        collect(leaves, index, &mut siblings);
        siblings.reverse();
        Some(MerkleProof {
            index: index as u64,
            total: leaves.len() as u64,
            siblings,
        })
    }

    /// Recomputes the root from `leaf` (a leaf hash) and compares it with `root`.
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> bool {
        self.compute_root(leaf).as_ref() == Some(root)
    }

    /// The root this proof leads to from `leaf`, or `None` if the proof is
    /// malformed (wrong length, index out of range).
    pub fn compute_root(&self, leaf: &Hash) -> Option<Hash> {
        if self.index >= self.total {
            return None;
        }
        // RFC 9162 section 2.1.3.2.
        let mut f_n = self.index;
        let mut s_n = self.total - 1;
        let mut r = *leaf;
        for p in &self.siblings {
            if s_n == 0 {
                return None;
            }
            if f_n & 1 == 1 || f_n == s_n {
                r = inner_hash(p, &r);
                if f_n & 1 == 0 {
                    while f_n & 1 == 0 && f_n != 0 {
                        f_n >>= 1;
                        s_n >>= 1;
                    }
                }
            } else {
                r = inner_hash(&r, p);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        (s_n == 0).then_some(r)
    }
}

fn collect(leaves: &[Hash], index: usize, out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    if index < k {
        out.push(root_of_leaf_hashes(&leaves[k..]));
        collect(&leaves[..k], index, out);
    } else {
        out.push(root_of_leaf_hashes(&leaves[..k]));
        collect(&leaves[k..], index - k, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_proof_of_every_size_verifies() {
        for n in 1..=33usize {
            let items: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 3]).collect();
            let leaves: Vec<Hash> = items.iter().map(|i| leaf_hash(i)).collect();
            let r = root(&items);
            for i in 0..n {
                let p = MerkleProof::build(&leaves, i).unwrap();
                assert!(p.verify(&leaves[i], &r), "n={n} i={i}");
                // Another leaf, or another index, must fail.
                let other = leaf_hash(b"other");
                assert!(!p.verify(&other, &r));
                if n > 1 {
                    let mut q = p.clone();
                    q.index = ((i + 1) % n) as u64;
                    assert!(!q.verify(&leaves[i], &r), "n={n} i={i}");
                }
                let mut q = p.clone();
                q.siblings.push(Hash::ZERO);
                assert!(!q.verify(&leaves[i], &r));
            }
        }
    }

    #[test]
    fn leaf_and_inner_hashes_differ() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut joined = vec![];
        joined.extend_from_slice(a.as_bytes());
        joined.extend_from_slice(b.as_bytes());
        assert_ne!(leaf_hash(&joined), inner_hash(&a, &b));
        assert_eq!(root::<&[u8]>(&[]), Hash::digest(&[]));
    }
}
