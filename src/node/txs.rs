//! Where transactions meet consensus: what a proposal carries, when a height
//! may start, and what happens to waiting transactions after a block.

use super::actor::Actor;
use crate::app::TxResult;
use crate::net::NetMessage;
use crate::types::{Block, PublicKey};

impl Actor {
    /// Transactions for our next proposal, oldest first.
    pub(super) fn reap_txs(&mut self) -> Vec<bytes::Bytes> {
        self.txpool
            .reap(self.rules.max_block_bytes(), self.rules.max_block_txs())
    }

    /// Whether transactions wait to be proposed.
    pub(super) fn has_pending_txs(&self) -> bool {
        self.txpool.has_pending()
    }

    /// Called after each committed, durable block.
    pub(super) fn after_commit(&mut self, block: &Block, results: &[TxResult]) {
        self.txpool.after_block(block, results);
    }

    /// Transactions gossiped by a peer: admitted off the consensus thread, in
    /// one batch of signature checks.
    pub(super) fn on_mempool_msg(&mut self, peer: PublicKey, msg: NetMessage) {
        let NetMessage::Txs(txs) = msg else {
            self.penalize(&peer, super::PeerFault::WrongChannel);
            return;
        };
        // Transactions from a member node are relayed to the validators it is
        // not connected to; validators already send to every validator.
        let relay = self.rules.validators().get(&peer).is_none();
        let pool = self.txpool.clone();
        let bad = self.bad_tx_tx.clone();
        // The run loop reads this queue only while a permit is free.
        let Ok(permit) = self.admissions.clone().try_acquire_owned() else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let invalid = pool.submit_from_peer(txs, relay);
            if invalid > 0 {
                let _ = bad.send((peer, invalid));
            }
        });
    }
}
