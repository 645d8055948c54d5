//! Gossip repair. Votes and proposals are broadcast once when signed; messages
//! can still be lost (a connection drops and comes back), so every node announces
//! its height, round, step and which votes it holds, and its peers re-send what it
//! lacks: votes of its round, the proposal, the precommits that decided a height,
//! or our current round's votes to a peer in an earlier round (so it can skip
//! ahead, L55). A peer a whole height or more behind fetches blocks with their
//! commits instead (`catchup`).

use std::time::Duration;

use tokio::time::Instant;

use super::actor::Actor;
use crate::net::{NetMessage, RoundStatus};
use crate::types::{PublicKey, Round, ValidatorSet, Vote, VoteType};

/// Least time between two re-sends of a proposal (or decision votes) to one peer.
const RESEND_INTERVAL: Duration = Duration::from_millis(500);

/// Bitmap of the validators (by canonical index) that cast these votes.
pub fn vote_bitmap(set: &ValidatorSet, votes: &[&Vote]) -> Vec<u8> {
    let mut bits = vec![0u8; set.len().div_ceil(8)];
    for v in votes {
        if let Some(i) = set.index_of(&v.validator) {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    bits
}

/// Whether bit `i` is set (bits beyond the bitmap are unset).
pub fn has_bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

impl Actor {
    /// Our round state as announced to peers.
    pub(super) fn round_status(&self) -> RoundStatus {
        let r = self.core.round();
        let set = self.rules.validators();
        RoundStatus {
            height: self.core.height(),
            round: r,
            step: self.core.step().code(),
            prevotes: vote_bitmap(set, &self.core.votes(r, VoteType::Prevote)),
            precommits: vote_bitmap(set, &self.core.votes(r, VoteType::Precommit)),
            has_proposal: self.core.proposal(r).is_some(),
            base_height: self.store.base_height(),
        }
    }

    /// Announces our state to every peer and retries block requests.
    pub(super) fn gossip_tick(&mut self) {
        if self.core.height().0 == 0 {
            return;
        }
        let status = self.round_status();
        self.net.broadcast(NetMessage::Status(status));
        self.request_blocks();
        #[cfg(feature = "faults")]
        if self.faults.flood_votes || self.faults.garbage_frames || self.faults.flood_txs {
            self.misbehave_on_tick();
        }
    }

    /// A peer told us where it stands: remember it, re-send what it lacks, and
    /// fetch blocks if it is ahead of us.
    pub(super) fn on_status(&mut self, peer: PublicKey, s: RoundStatus) {
        {
            let p = self.peers.entry(peer).or_default();
            p.height = s.height;
            p.round = s.round;
            p.step = s.step;
        }
        self.answer_status(&peer, &s);
        self.request_blocks();
    }

    fn may_resend(&mut self, peer: &PublicKey, s: &RoundStatus) -> bool {
        let now = Instant::now();
        let p = self.peers.entry(*peer).or_default();
        match p.resent {
            Some((h, r, at)) if h == s.height && r == s.round && now - at < RESEND_INTERVAL => {
                false
            }
            _ => {
                p.resent = Some((s.height, s.round, now));
                true
            }
        }
    }

    fn answer_status(&mut self, peer: &PublicKey, s: &RoundStatus) {
        let h = self.core.height();
        if s.height != h || h.0 == 0 {
            return;
        }
        let set = self.rules.validators().clone();
        let ours = self.core.round();
        let mut out: Vec<NetMessage> = Vec::new();
        if self.is_decided() {
            // We decided this height; the peer has not: give it the deciding
            // precommits and the block (L49 decides on any round).
            if s.step == 3 || !self.may_resend(peer, s) {
                return;
            }
            if let Some(r) = self.decided_round {
                for v in self.core.votes(r, VoteType::Precommit) {
                    out.push(NetMessage::Vote(v.clone()));
                }
                if let Some((p, b)) = self.core.proposal(r) {
                    out.push(NetMessage::Proposal {
                        proposal: p.clone(),
                        block: b.clone(),
                    });
                }
            }
        } else if s.round < ours {
            // Our round's votes let the peer skip ahead (L55).
            if !self.may_resend(peer, s) {
                return;
            }
            for t in [VoteType::Prevote, VoteType::Precommit] {
                for v in self.core.votes(ours, t) {
                    out.push(NetMessage::Vote(v.clone()));
                }
            }
        } else if s.round == ours {
            // The bitmaps say whose vote the peer holds, not which one: an
            // equivocator's second vote may be the one a polka needs, so votes
            // of validators that signed two are re-sent too (at the resend pace).
            let resend = self.may_resend(peer, s);
            for (t, bits) in [
                (VoteType::Prevote, &s.prevotes),
                (VoteType::Precommit, &s.precommits),
            ] {
                let votes = self.core.votes(ours, t);
                let mut seen = std::collections::HashSet::new();
                let twice: std::collections::HashSet<PublicKey> = votes
                    .iter()
                    .filter(|v| !seen.insert(v.validator))
                    .map(|v| v.validator)
                    .collect();
                for v in votes {
                    let missing = set
                        .index_of(&v.validator)
                        .is_some_and(|i| !has_bit(bits, i));
                    if missing || (resend && twice.contains(&v.validator)) {
                        out.push(NetMessage::Vote(v.clone()));
                    }
                }
            }
            if resend && !self.withholds_blocks() {
                if let Some((p, b)) = self.core.proposal(ours) {
                    // A re-proposal is justified by the prevotes of its valid
                    // round (L28); the peer may hold the proposal and still lack
                    // them (the status carries no bitmap of that round).
                    if let Some(vr) = p.pol_round {
                        for v in self.core.votes(vr, VoteType::Prevote) {
                            out.push(NetMessage::Vote(v.clone()));
                        }
                    }
                    if !s.has_proposal {
                        out.push(NetMessage::Proposal {
                            proposal: p.clone(),
                            block: b.clone(),
                        });
                    }
                }
            }
        }
        for m in out {
            self.net.send(peer, m);
        }
    }

    /// The round a peer reported, if known.
    pub fn peer_round(&self, peer: &PublicKey) -> Option<Round> {
        self.peers.get(peer).map(|p| p.round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Height, Keypair, Timestamp};

    #[test]
    fn bitmap_marks_voters_by_index() {
        let keys: Vec<Keypair> = (1..=10u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let set = ValidatorSet::equal_power(&keys);
        let votes: Vec<Vote> = [0usize, 9]
            .iter()
            .map(|i| {
                Vote::new_signed(
                    &keys[*i],
                    "c",
                    VoteType::Prevote,
                    Height(1),
                    Round(0),
                    None,
                    Timestamp(0),
                )
            })
            .collect();
        let refs: Vec<&Vote> = votes.iter().collect();
        let bits = vote_bitmap(&set, &refs);
        assert_eq!(bits.len(), 2);
        for (i, v) in set.validators().iter().enumerate() {
            let voted = votes.iter().any(|x| x.validator == v.public_key);
            assert_eq!(has_bit(&bits, i), voted);
        }
        assert!(!has_bit(&bits, 200));
    }
}
