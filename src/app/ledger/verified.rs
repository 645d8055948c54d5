//! Hashes of transactions whose signature this node has verified, so that a
//! signature is checked once per node, not again at execution.

use parking_lot::Mutex;
use std::collections::HashSet;

use crate::types::Hash;

/// A bounded set: two generations, the older dropped when the newer fills up.
#[derive(Debug)]
pub struct VerifiedCache {
    cap: usize,
    gens: Mutex<(HashSet<Hash>, HashSet<Hash>)>,
}

impl VerifiedCache {
    /// A cache remembering at least `cap` recent hashes.
    pub fn new(cap: usize) -> VerifiedCache {
        VerifiedCache {
            cap: cap.max(1),
            gens: Mutex::new((HashSet::new(), HashSet::new())),
        }
    }

    /// Whether `h` was verified recently.
    pub fn contains(&self, h: &Hash) -> bool {
        let g = self.gens.lock();
        g.0.contains(h) || g.1.contains(h)
    }

    /// Records that `h` verified.
    pub fn insert(&self, h: Hash) {
        let mut g = self.gens.lock();
        if g.0.len() >= self.cap {
            let newer = std::mem::take(&mut g.0);
            g.1 = newer;
        }
        g.0.insert(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_and_bounds_memory() {
        let c = VerifiedCache::new(10);
        for i in 0..25u32 {
            c.insert(Hash::digest(&i.to_be_bytes()));
        }
        assert!(c.contains(&Hash::digest(&24u32.to_be_bytes())));
        assert!(c.contains(&Hash::digest(&15u32.to_be_bytes())));
        assert!(!c.contains(&Hash::digest(&0u32.to_be_bytes())));
    }
}
