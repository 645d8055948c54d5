//! Prevotes and precommits, and proposals.

use std::fmt;

use super::{
    BlockId, Canonical, Height, Keypair, PublicKey, Round, Signature, Timestamp, TypesError,
};

/// Domain tag of vote sign bytes.
pub const VOTE_TAG: &str = "consort/vote/v1";
/// Domain tag of proposal sign bytes.
pub const PROPOSAL_TAG: &str = "consort/proposal/v1";

/// The two kinds of vote.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VoteType {
    /// First-stage vote (a polka is +2/3 of them for one value).
    Prevote,
    /// Second-stage vote (a commit is +2/3 of them for one block).
    Precommit,
}

impl VoteType {
    fn code(self) -> u8 {
        match self {
            VoteType::Prevote => 1,
            VoteType::Precommit => 2,
        }
    }
}

impl fmt::Display for VoteType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteType::Prevote => "prevote",
            VoteType::Precommit => "precommit",
        })
    }
}

/// A signed vote. `block_id` is `None` for a vote for nil.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height voted at.
    pub height: Height,
    /// Round voted in.
    pub round: Round,
    /// The block voted for, or nil.
    pub block_id: Option<BlockId>,
    /// The voter's clock when it signed; precommit times make block time.
    pub time: Timestamp,
    /// The voter.
    pub validator: PublicKey,
    /// Signature over [`Vote::sign_bytes`].
    pub signature: Signature,
}

impl Vote {
    /// The canonical bytes a vote signature covers.
    pub fn sign_bytes(
        chain_id: &str,
        vote_type: VoteType,
        height: Height,
        round: Round,
        block_id: Option<&BlockId>,
        time: Timestamp,
    ) -> Vec<u8> {
        let mut c = Canonical::tagged(VOTE_TAG);
        c.str(chain_id)
            .u8(vote_type.code())
            .height(height)
            .round(round)
            .opt_hash(block_id)
            .time(time);
        c.finish()
    }

    /// Builds and signs a vote.
    pub fn new_signed(
        key: &Keypair,
        chain_id: &str,
        vote_type: VoteType,
        height: Height,
        round: Round,
        block_id: Option<BlockId>,
        time: Timestamp,
    ) -> Vote {
        let bytes = Vote::sign_bytes(chain_id, vote_type, height, round, block_id.as_ref(), time);
        Vote {
            vote_type,
            height,
            round,
            block_id,
            time,
            validator: key.public(),
            signature: key.sign(&bytes),
        }
    }

    /// The bytes this vote's signature covers.
    pub fn to_sign_bytes(&self, chain_id: &str) -> Vec<u8> {
        Vote::sign_bytes(
            chain_id,
            self.vote_type,
            self.height,
            self.round,
            self.block_id.as_ref(),
            self.time,
        )
    }

    /// Checks the signature.
    pub fn verify(&self, chain_id: &str) -> Result<(), TypesError> {
        self.validator
            .verify(&self.to_sign_bytes(chain_id), &self.signature)
    }

    /// True if two votes are for the same slot (validator, height, round, type):
    /// signing both with different block ids is equivocation.
    pub fn same_slot(&self, other: &Vote) -> bool {
        self.validator == other.validator
            && self.height == other.height
            && self.round == other.round
            && self.vote_type == other.vote_type
    }
}

/// A signed proposal of a block for (height, round). The block travels with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Height proposed at.
    pub height: Height,
    /// Round proposed in.
    pub round: Round,
    /// The round of the polka that justifies re-proposing this block (validRound of
    /// the paper), or `None` for a fresh block.
    pub pol_round: Option<Round>,
    /// The proposed block.
    pub block_id: BlockId,
    /// The proposer's clock when it signed.
    pub time: Timestamp,
    /// The proposer.
    pub proposer: PublicKey,
    /// Signature over [`Proposal::sign_bytes`].
    pub signature: Signature,
}

impl Proposal {
    /// The canonical bytes a proposal signature covers.
    pub fn sign_bytes(
        chain_id: &str,
        height: Height,
        round: Round,
        pol_round: Option<Round>,
        block_id: &BlockId,
        time: Timestamp,
    ) -> Vec<u8> {
        let mut c = Canonical::tagged(PROPOSAL_TAG);
        c.str(chain_id)
            .height(height)
            .round(round)
            .opt_round(pol_round)
            .hash(block_id)
            .time(time);
        c.finish()
    }

    /// Builds and signs a proposal.
    pub fn new_signed(
        key: &Keypair,
        chain_id: &str,
        height: Height,
        round: Round,
        pol_round: Option<Round>,
        block_id: BlockId,
        time: Timestamp,
    ) -> Proposal {
        let bytes = Proposal::sign_bytes(chain_id, height, round, pol_round, &block_id, time);
        Proposal {
            height,
            round,
            pol_round,
            block_id,
            time,
            proposer: key.public(),
            signature: key.sign(&bytes),
        }
    }

    /// Checks the signature.
    pub fn verify(&self, chain_id: &str) -> Result<(), TypesError> {
        let bytes = Proposal::sign_bytes(
            chain_id,
            self.height,
            self.round,
            self.pol_round,
            &self.block_id,
            self.time,
        );
        self.proposer.verify(&bytes, &self.signature)
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use crate::types::Hash;

    #[test]
    fn vote_signature_binds_every_field() {
        let k = Keypair::from_seed([7; 32]);
        let id = Hash::digest(b"block");
        let v = Vote::new_signed(
            &k,
            "c",
            VoteType::Prevote,
            Height(3),
            Round(1),
            Some(id),
            Timestamp(9),
        );
        assert!(v.verify("c").is_ok());
        assert!(v.verify("other-chain").is_err());
        let mutations: Vec<Box<dyn Fn(&mut Vote)>> = vec![
            Box::new(|v| v.vote_type = VoteType::Precommit),
            Box::new(|v| v.height = Height(4)),
            Box::new(|v| v.round = Round(2)),
            Box::new(|v| v.block_id = None),
            Box::new(|v| v.time = Timestamp(10)),
            Box::new(|v| v.validator = Keypair::from_seed([8; 32]).public()),
        ];
        for m in mutations {
            let mut w = v.clone();
            m(&mut w);
            assert!(w.verify("c").is_err(), "{w:?}");
        }
    }

    #[test]
    fn vote_and_proposal_bytes_never_collide() {
        let id = Hash::digest(b"b");
        let v = Vote::sign_bytes(
            "c",
            VoteType::Prevote,
            Height(1),
            Round(0),
            Some(&id),
            Timestamp(0),
        );
        let p = Proposal::sign_bytes("c", Height(1), Round(0), None, &id, Timestamp(0));
        assert_ne!(v, p);
    }

    #[test]
    fn proposal_signature() {
        let k = Keypair::from_seed([7; 32]);
        let id = Hash::digest(b"block");
        let p = Proposal::new_signed(
            &k,
            "c",
            Height(3),
            Round(1),
            Some(Round(0)),
            id,
            Timestamp(5),
        );
        assert!(p.verify("c").is_ok());
        let mut q = p.clone();
        q.pol_round = None;
        assert!(q.verify("c").is_err());
    }
}
