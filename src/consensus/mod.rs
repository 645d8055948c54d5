//! Consensus.
