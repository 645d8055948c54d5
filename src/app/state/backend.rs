//! Where the committed state lives: the storage layer's state tree (see
//! [`crate::storage::state`]), seen as tree leaves.

pub use crate::storage::state::{
    Change, Entry, MemBackend, StateBackend, StateError, bucket_start,
};

use super::smt::{Leaf, leaf_hash};
use crate::types::Hash;

/// An entry as a leaf of the state tree.
pub trait AsLeaf {
    /// The leaf of this entry under key hash `kh`.
    fn leaf(&self, kh: Hash) -> Leaf;
}

impl AsLeaf for Entry {
    fn leaf(&self, kh: Hash) -> Leaf {
        Leaf {
            kh,
            hash: leaf_hash(&kh, &self.value_hash()),
        }
    }
}
