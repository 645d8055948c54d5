//! Test misbehaviour of a validator ([`crate::faults`], builds with the `faults`
//! feature only): what the runtime does instead of, or besides, the honest
//! thing. Nothing here runs unless `CONSORT_FAULTS` switched it on.

use std::sync::Arc;

use tracing::warn;

use super::actor::Actor;
use crate::net::{Channel, NetMessage};
use crate::types::{Block, Hash, Height, Keypair, Proposal, Round, Signature, Vote};

/// Far-future votes sent to each peer per gossip tick.
const FLOOD_BURST: u64 = 1000;
/// Transactions per garbage mempool frame.
const FLOOD_TXS: usize = 256;

impl Actor {
    /// The key the misbehaviours sign with, if one is switched on.
    fn fault_key(&self) -> Option<&Keypair> {
        self.fault_key.as_ref()
    }

    /// Sends a vote conflicting with `vote` (signed outside the core, so past
    /// its signing-state guard).
    pub(super) fn equivocate_vote(&self, vote: &Vote) {
        let Some(key) = self.fault_key() else {
            return;
        };
        let other = match vote.block_id {
            Some(_) => None,
            None => Some(Hash::digest(
                format!("equivocation {} {}", vote.height, vote.round).as_bytes(),
            )),
        };
        let twin = Vote::new_signed(
            key,
            self.rules.chain_id(),
            vote.vote_type,
            vote.height,
            vote.round,
            other,
            vote.time,
        );
        warn!(height = %vote.height, round = %vote.round, kind = %vote.vote_type, "TEST MISBEHAVIOUR: equivocating vote");
        self.net.broadcast(NetMessage::Vote(twin));
    }

    /// Sends our proposal to half of the peers and a conflicting one to the
    /// others, or (withholding) to nobody. Returns false if the honest
    /// broadcast is to happen instead.
    pub(super) fn misbehave_proposal(&self, proposal: &Proposal, block: &Arc<Block>) -> bool {
        if self.faults.withhold_blocks {
            warn!(height = %proposal.height, round = %proposal.round, "TEST MISBEHAVIOUR: withholding our proposal");
            return true;
        }
        let (true, Some(key)) = (self.faults.equivocate_proposals, self.fault_key()) else {
            return false;
        };
        // Another block: one millisecond later. Valid-looking, and no honest
        // validator accepts its time, so the round may fail.
        let mut other = (**block).clone();
        other.header.time = crate::types::Timestamp(other.header.time.0 + 1);
        let twin = Proposal::new_signed(
            key,
            self.rules.chain_id(),
            proposal.height,
            proposal.round,
            proposal.pol_round,
            other.id(),
            proposal.time,
        );
        let peers = self.net.connected_peers();
        let half = peers.len().div_ceil(2);
        warn!(height = %proposal.height, round = %proposal.round, "TEST MISBEHAVIOUR: equivocating proposal");
        let other = Arc::new(other);
        for (i, (peer, _)) in peers.iter().enumerate() {
            let msg = if i < half {
                NetMessage::Proposal {
                    proposal: proposal.clone(),
                    block: block.clone(),
                }
            } else {
                NetMessage::Proposal {
                    proposal: twin.clone(),
                    block: other.clone(),
                }
            };
            self.net.send(peer, msg);
        }
        true
    }

    /// Per gossip tick: floods and garbage.
    pub(super) fn misbehave_on_tick(&mut self) {
        let h = self.core.height();
        if self.faults.flood_votes {
            if let Some(key) = self.fault_key().cloned() {
                self.fault_tick = self.fault_tick.wrapping_add(1);
                let base = self.fault_tick.wrapping_mul(FLOOD_BURST);
                // One real signature per tick, copied onto the rest: far-future
                // votes are dropped before any signature check anyway.
                let template = Vote::new_signed(
                    &key,
                    self.rules.chain_id(),
                    crate::types::VoteType::Prevote,
                    Height(h.0 + 1_000 + base),
                    Round(0),
                    None,
                    super::now_ms(),
                );
                for i in 0..FLOOD_BURST {
                    let n = base.wrapping_add(i);
                    // Far-future heights, and far-future rounds of our height.
                    let (height, round) = if i % 2 == 0 {
                        (Height(h.0 + 1_000 + n), Round((n % 1000) as u32))
                    } else {
                        (h, Round(1_000 + (n % 1_000_000) as u32))
                    };
                    let vote = Vote {
                        height,
                        round,
                        block_id: Some(Hash::digest(&n.to_be_bytes())),
                        ..template.clone()
                    };
                    self.net.broadcast(NetMessage::Vote(vote));
                }
            }
        }
        if self.faults.flood_txs {
            let n = self.fault_tick;
            let txs = (0..FLOOD_TXS)
                .map(|i| {
                    bytes::Bytes::from(format!("not a transaction {n} {i} {}", "x".repeat(200)))
                })
                .collect();
            self.net.broadcast(NetMessage::Txs(txs));
        }
        if self.faults.garbage_frames {
            self.fault_tick = self.fault_tick.wrapping_add(1);
            // A vote of our height and round whose signature is not its signer's.
            let Some(v) = self.rules.validators().validators().first().cloned() else {
                return;
            };
            let mut vote = Vote::new_signed(
                &Keypair::from_seed([0xee; 32]),
                self.rules.chain_id(),
                crate::types::VoteType::Prevote,
                h,
                self.core.round(),
                None,
                super::now_ms(),
            );
            vote.validator = v.public_key;
            if let Ok(sig) = Signature::from_slice(&[0x5a; 64]) {
                vote.signature = sig;
            }
            self.net.broadcast(NetMessage::Vote(vote));
            // Every tenth tick, a frame that does not decode.
            if self.fault_tick % 10 == 0 {
                for (peer, _) in self.net.connected_peers() {
                    self.net.send_raw_frame(
                        &peer,
                        Channel::Mempool,
                        b"\x0a\xff\xff\xff\xff\x0fnot a frame",
                    );
                }
            }
        }
    }

    /// Whether to leave a block request unanswered.
    pub(super) fn withholds_blocks(&self) -> bool {
        self.faults.withhold_blocks
    }
}
