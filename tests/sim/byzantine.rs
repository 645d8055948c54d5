//! Byzantine validators. Each runs the real core (so it follows the protocol
//! where it does not deviate) and tampers with what goes out: silence,
//! equivocating votes and proposals sent to different peers, and ByzzFuzz-style
//! small mutations of its messages re-signed with its key. Twins (two copies
//! sharing a key) and amnesia (restarts without persisted state) are set up in
//! `world.rs`; invalid blocks come from `Sim::make_value`.

use std::sync::Arc;

use consort::types::{Proposal, Round, Vote, VoteType};

use super::chain::CHAIN_ID;
use super::world::{Msg, Sim};

impl Sim {
    /// Whether Byzantine node `i` is silent now.
    fn silent(&self, i: usize) -> bool {
        self.nodes[i]
            .plan
            .as_ref()
            .and_then(|p| p.silent_from)
            .is_some_and(|t| self.now >= t)
    }

    /// A Byzantine node's broadcast: possibly the message to some peers and a
    /// conflicting one to the others. The split is random in size, and a
    /// conflicting vote goes for what the recipient is likely to count (the block
    /// of its proposal for that round): the adversary sees the whole network.
    pub(crate) fn byzantine_broadcast(&mut self, i: usize, msg: Msg) {
        let Some(plan) = self.nodes[i].plan.clone() else {
            return;
        };
        let mut peers = self.nodes[i].audience.clone();
        self.rng.shuffle(&mut peers);
        let keep = if peers.len() > 1 {
            self.rng.range(1, peers.len() as u64 - 1) as usize
        } else {
            peers.len()
        };
        let equivocate = match &msg {
            Msg::Vote(_) => self.rng.chance(plan.equivocate_votes),
            Msg::Proposal(..) => plan.equivocate_proposals,
            Msg::CatchUp(_) => false,
        };
        let second = match &msg {
            Msg::Proposal(p, _) if equivocate => self.second_proposal(i, p),
            _ => None,
        };
        if equivocate && self.trace {
            eprintln!("[{:>7}] n{i} EQUIVOCATES to {:?}", self.now, &peers[keep..]);
        }
        for (k, j) in peers.into_iter().enumerate() {
            let m = match &msg {
                Msg::Vote(v) if equivocate && k >= keep => {
                    Msg::Vote(self.conflicting_vote(i, j, v))
                }
                Msg::Proposal(..) if k >= keep && second.is_some() => {
                    second.clone().unwrap_or_else(|| msg.clone())
                }
                _ => msg.clone(),
            };
            self.send_from(i, j, m);
        }
    }

    /// What a node's outgoing message becomes: nothing if it is silent, possibly
    /// mutated if it is Byzantine, unchanged if it is correct.
    pub(crate) fn byzantine_filter(&mut self, i: usize, msg: Msg) -> Option<Msg> {
        let Some(plan) = &self.nodes[i].plan else {
            return Some(msg);
        };
        if self.silent(i) {
            return None;
        }
        let mutate = plan.mutate;
        if !self.rng.chance(mutate) {
            return Some(msg);
        }
        Some(match msg {
            Msg::Vote(v) => Msg::Vote(self.mutate_vote(i, &v)),
            Msg::Proposal(p, b) => self.mutate_proposal(i, p, b),
            other => other,
        })
    }

    fn sign_vote(&self, i: usize, v: &Vote) -> Vote {
        Vote::new_signed(
            &self.nodes[i].key,
            CHAIN_ID,
            v.vote_type,
            v.height,
            v.round,
            v.block_id,
            v.time,
        )
    }

    fn sign_proposal(&self, i: usize, p: &Proposal) -> Proposal {
        Proposal::new_signed(
            &self.nodes[i].key,
            CHAIN_ID,
            p.height,
            p.round,
            p.pol_round,
            p.block_id,
            p.time,
        )
    }

    /// A vote for the same slot with another value, chosen for recipient `j`: the
    /// block of `j`'s proposal for the round if it differs, else nil (or a block
    /// seen lately, for a nil vote).
    fn conflicting_vote(&mut self, i: usize, j: usize, v: &Vote) -> Vote {
        let theirs = self.nodes[j]
            .core
            .as_ref()
            .filter(|c| c.height() == v.height)
            .and_then(|c| c.proposal(v.round).map(|(p, _)| p.block_id));
        let mut w = v.clone();
        w.block_id = match (theirs, v.block_id) {
            (Some(t), mine) if Some(t) != mine => Some(t),
            (_, Some(_)) => None,
            (_, None) => self.old_value(i),
        };
        if w.block_id == v.block_id {
            w.round = Round(v.round.0 + 1);
        }
        self.sign_vote(i, &w)
    }

    /// A block id seen lately, if any.
    fn old_value(&mut self, i: usize) -> Option<consort::types::BlockId> {
        let mem = &self.nodes[i].memory;
        if mem.is_empty() {
            return None;
        }
        let k = self.rng.below(mem.len() as u64) as usize;
        Some(self.nodes[i].memory[k].id())
    }

    /// A second proposal for the slot of `p`, with another (valid) block.
    fn second_proposal(&mut self, i: usize, p: &Proposal) -> Option<Msg> {
        let prev = self.nodes[i].disk.chain.last().cloned();
        if self.nodes[i].disk.chain.len() as u64 + 1 != p.height.0 {
            return None;
        }
        let key = self.nodes[i].key.clone();
        let block = Arc::new(
            self.ver
                .build_block(&mut self.rng, p.height, prev.as_ref(), &key),
        );
        let mut q = p.clone();
        q.block_id = block.id();
        q.pol_round = None;
        Some(Msg::Proposal(self.sign_proposal(i, &q), block))
    }

    /// ByzzFuzz: a small change to a vote, re-signed.
    fn mutate_vote(&mut self, i: usize, v: &Vote) -> Vote {
        let mut w = v.clone();
        match self.rng.below(5) {
            0 => w.round = Round(v.round.0 + 1),
            1 => w.round = Round(v.round.0.saturating_sub(1)),
            2 => w.block_id = self.old_value(i),
            3 => {
                w.block_id = match v.block_id {
                    Some(_) => None,
                    None => self.old_value(i),
                }
            }
            _ => {
                w.vote_type = match v.vote_type {
                    VoteType::Prevote => VoteType::Precommit,
                    VoteType::Precommit => VoteType::Prevote,
                }
            }
        }
        self.sign_vote(i, &w)
    }

    /// ByzzFuzz: a small change to a proposal, re-signed.
    fn mutate_proposal(&mut self, i: usize, p: Proposal, block: Arc<consort::types::Block>) -> Msg {
        let mut q = p.clone();
        let mut block = block;
        match self.rng.below(4) {
            0 => q.round = Round(p.round.0 + 1),
            1 => q.round = Round(p.round.0.saturating_sub(1)),
            2 => {
                q.pol_round = match p.pol_round {
                    Some(_) => None,
                    None if p.round.0 > 0 => Some(Round(self.rng.below(p.round.0 as u64) as u32)),
                    None => None,
                }
            }
            _ => {
                let mem = &self.nodes[i].memory;
                if !mem.is_empty() {
                    let k = self.rng.below(mem.len() as u64) as usize;
                    block = self.nodes[i].memory[k].clone();
                    q.block_id = block.id();
                }
            }
        }
        Msg::Proposal(self.sign_proposal(i, &q), block)
    }
}
