//! Evidence of misbehaviour: two conflicting votes signed by one validator.

use super::{Canonical, Hash, TypesError, ValidatorSet, Vote};

/// Two votes of one validator for the same height, round and type with different
/// block ids. Stored in a canonical order (lower block id first, nil lowest) so the
/// same equivocation always hashes the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateVote {
    /// The vote with the lower block id.
    pub first: Vote,
    /// The vote with the higher block id.
    pub second: Vote,
}

impl DuplicateVote {
    /// Pairs two votes if they conflict; `None` if they are the same slot's same
    /// vote or not the same slot.
    pub fn new(a: Vote, b: Vote) -> Option<DuplicateVote> {
        if !a.same_slot(&b) || a.block_id == b.block_id {
            return None;
        }
        let (first, second) = if a.block_id < b.block_id {
            (a, b)
        } else {
            (b, a)
        };
        Some(DuplicateVote { first, second })
    }

    /// Checks the pair: conflicting, canonical order, both signed by a validator.
    pub fn verify(&self, chain_id: &str, set: &ValidatorSet) -> Result<(), TypesError> {
        if !self.first.same_slot(&self.second) {
            return Err(TypesError::InvalidEvidence(
                "votes are not for the same slot".into(),
            ));
        }
        if self.first.block_id >= self.second.block_id {
            return Err(TypesError::InvalidEvidence(
                "votes do not conflict or are not in canonical order".into(),
            ));
        }
        if set.get(&self.first.validator).is_none() {
            return Err(TypesError::InvalidEvidence(format!(
                "{} is not a validator",
                self.first.validator
            )));
        }
        self.first.verify(chain_id)?;
        self.second.verify(chain_id)
    }

    /// The slot equivocated in: (validator, height, round, vote type). One
    /// equivocation in a slot can be shown by many pairs of votes (every two
    /// of its conflicting votes); one of them is proof enough.
    pub fn slot(
        &self,
    ) -> (
        super::PublicKey,
        super::Height,
        super::Round,
        super::VoteType,
    ) {
        let v = &self.first;
        (v.validator, v.height, v.round, v.vote_type)
    }

    /// Hash identifying this evidence.
    pub fn hash(&self) -> Hash {
        let mut c = Canonical::tagged("consort/evidence/duplicate-vote/v1");
        for v in [&self.first, &self.second] {
            c.bytes(v.validator.as_bytes())
                .u8(v.vote_type as u8)
                .height(v.height)
                .round(v.round)
                .opt_hash(v.block_id.as_ref())
                .time(v.time)
                .bytes(v.signature.as_bytes());
        }
        c.digest()
    }
}

/// Evidence carried in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A validator voted twice in one slot.
    DuplicateVote(DuplicateVote),
}

impl Evidence {
    /// Hash identifying this evidence.
    pub fn hash(&self) -> Hash {
        match self {
            Evidence::DuplicateVote(d) => d.hash(),
        }
    }

    /// Checks the evidence against the validator set.
    pub fn verify(&self, chain_id: &str, set: &ValidatorSet) -> Result<(), TypesError> {
        match self {
            Evidence::DuplicateVote(d) => d.verify(chain_id, set),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Height, Keypair, Round, Timestamp, VoteType};

    #[test]
    fn pairs_only_conflicting_votes() {
        let k = Keypair::from_seed([1; 32]);
        let set = ValidatorSet::equal_power([&k]);
        let vote = |id: Option<Hash>, round: u32| {
            Vote::new_signed(
                &k,
                "c",
                VoteType::Prevote,
                Height(1),
                Round(round),
                id,
                Timestamp(0),
            )
        };
        let a = vote(Some(Hash::digest(b"a")), 0);
        let b = vote(Some(Hash::digest(b"b")), 0);
        let nil = vote(None, 0);
        assert!(DuplicateVote::new(a.clone(), a.clone()).is_none());
        assert!(DuplicateVote::new(a.clone(), vote(Some(Hash::digest(b"b")), 1)).is_none());
        let d1 = DuplicateVote::new(a.clone(), b.clone()).unwrap();
        let d2 = DuplicateVote::new(b.clone(), a.clone()).unwrap();
        assert_eq!(d1, d2);
        assert_eq!(d1.hash(), d2.hash());
        assert!(d1.verify("c", &set).is_ok());
        let d3 = DuplicateVote::new(nil, a).unwrap();
        assert_eq!(d3.first.block_id, None);
        assert!(d3.verify("c", &set).is_ok());
        assert!(d3.verify("x", &set).is_err());
        let swapped = DuplicateVote {
            first: d1.second.clone(),
            second: d1.first.clone(),
        };
        assert!(swapped.verify("c", &set).is_err());
    }
}
