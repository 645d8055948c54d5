//! The ledger's state: entries in sled and the sparse Merkle tree committing to
//! them.

pub mod smt;
