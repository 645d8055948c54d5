//! The ledger's state: entries ordered by key hash in a [`StateBackend`], and the
//! sparse Merkle tree ([`smt`]) committing to them.

pub mod backend;
pub mod committed;
pub mod delta;
pub mod smt;

pub use backend::{AsLeaf, Change, Entry, MemBackend, StateBackend, StateError};
pub use committed::{CommittedState, PreparedChanges};
pub use smt::{Proven, StateProof, Terminal};
