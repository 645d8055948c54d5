//! Where transactions meet consensus: what a proposal carries, and what happens
//! to pending transactions after a block. This node has no mempool yet: proposals
//! carry no transactions, and transaction gossip from peers is ignored.

use super::actor::Actor;
use crate::net::NetMessage;
use crate::types::{Block, PublicKey};

impl Actor {
    /// Transactions for our next proposal.
    pub(super) fn reap_txs(&mut self) -> Vec<bytes::Bytes> {
        Vec::new()
    }

    /// Whether transactions wait to be proposed.
    pub(super) fn has_pending_txs(&self) -> bool {
        false
    }

    /// Called after each committed block.
    pub(super) fn after_commit(&mut self, _block: &Block) {}

    /// Transactions gossiped by a peer.
    pub(super) fn on_mempool_msg(&mut self, _peer: PublicKey, _msg: NetMessage) {}
}
