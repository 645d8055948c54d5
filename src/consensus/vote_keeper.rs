//! Counting votes of one height: tallies per round, type and value, who has been
//! heard from in each round (for the round skip of L55), and equivocation.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::types::{BlockId, DuplicateVote, PublicKey, Round, ValidatorSet, Vote, VoteType};

/// The votes of one type in one round.
///
/// A validator counts once towards "any value" (its first vote) and at most once
/// towards each value it signed. Counting an equivocator's conflicting vote for its
/// own value is what the paper's "2f+1 ⟨PREVOTE, h, r, id(v)⟩" means (messages from
/// 2f+1 distinct senders), and liveness needs it: if another correct node saw a
/// polka or a commit that includes a conflicting vote, we must be able to see it
/// too once that vote reaches us, even though a different vote of the same
/// validator reached us first. Two values still cannot both reach a quorum unless
/// more than a third of the power equivocates.
///
/// A conflicting vote counts only for nil or for a value that some validator
/// voted for first: a value that can reach a quorum has correct supporters, and
/// correct validators never equivocate. This bounds what an equivocator can make
/// us store (at most one entry per validator and supported value) without letting
/// it crowd out the value that matters. A conflicting vote that arrives before the
/// value has support is not counted; the runtime sends it again, since we do not
/// hold it.
#[derive(Debug, Default, Clone)]
pub struct VoteTally {
    /// First vote of each validator; later conflicting ones become evidence.
    votes: HashMap<PublicKey, Vote>,
    /// Conflicting votes counted for their own value, by validator and value.
    conflicting: HashMap<(PublicKey, Option<BlockId>), Vote>,
    /// Power per value (`None` = nil).
    power_by_value: HashMap<Option<BlockId>, u64>,
    /// Power of all votes, whatever the value.
    power_any: u64,
}

impl VoteTally {
    /// Power that voted for `value`.
    pub fn power_for(&self, value: Option<&BlockId>) -> u64 {
        self.power_by_value
            .get(&value.copied())
            .copied()
            .unwrap_or(0)
    }

    /// Power of all votes.
    pub fn power_any(&self) -> u64 {
        self.power_any
    }

    /// The votes counted: the first of each validator, then conflicting ones.
    pub fn votes(&self) -> impl Iterator<Item = &Vote> {
        self.votes.values().chain(self.conflicting.values())
    }

    /// The vote of `validator`, if counted.
    pub fn vote_of(&self, validator: &PublicKey) -> Option<&Vote> {
        self.votes.get(validator)
    }

    /// The value (possibly nil) with more than 2/3 of the power, if any.
    pub fn quorum_value(&self, set: &ValidatorSet) -> Option<Option<BlockId>> {
        self.power_by_value
            .iter()
            .find(|(_, p)| set.is_quorum(**p))
            .map(|(v, _)| *v)
    }
}

/// Votes and senders of one round.
#[derive(Debug, Default, Clone)]
struct RoundVotes {
    prevotes: VoteTally,
    precommits: VoteTally,
    /// Validators heard from in this round (votes of either type, or a proposal).
    senders: HashSet<PublicKey>,
    sender_power: u64,
}

/// What adding a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddVote {
    /// Counted.
    Added,
    /// The same vote was already counted, or a conflicting vote of a validator
    /// already reported (counted for its value if that value has support).
    Duplicate,
    /// The validator already voted differently in this slot: the pair is evidence.
    /// The second vote counts for its own value if that value has support (see
    /// [`VoteTally`]), never towards "any value".
    Equivocation(DuplicateVote),
    /// Not from a validator: ignored.
    NotValidator,
}

/// All votes of the current height.
#[derive(Debug, Default, Clone)]
pub struct VoteKeeper {
    rounds: BTreeMap<Round, RoundVotes>,
    /// Slots already reported as equivocation, so each is reported once.
    reported: HashSet<(PublicKey, Round, VoteType)>,
}

impl VoteKeeper {
    /// Counts a vote (its height has been checked by the caller).
    pub fn add(&mut self, set: &ValidatorSet, vote: Vote) -> AddVote {
        let power = set.power_of(&vote.validator);
        if power == 0 {
            return AddVote::NotValidator;
        }
        let round = self.rounds.entry(vote.round).or_default();
        let tally = match vote.vote_type {
            VoteType::Prevote => &mut round.prevotes,
            VoteType::Precommit => &mut round.precommits,
        };
        if let Some(existing) = tally.votes.get(&vote.validator) {
            if existing.block_id == vote.block_id
                || tally
                    .conflicting
                    .contains_key(&(vote.validator, vote.block_id))
            {
                return AddVote::Duplicate;
            }
            let evidence = if self
                .reported
                .insert((vote.validator, vote.round, vote.vote_type))
            {
                DuplicateVote::new(existing.clone(), vote.clone())
            } else {
                None
            };
            let supported = vote.block_id.is_none()
                || tally.votes.values().any(|v| v.block_id == vote.block_id);
            if supported {
                *tally.power_by_value.entry(vote.block_id).or_insert(0) += power;
                tally
                    .conflicting
                    .insert((vote.validator, vote.block_id), vote);
            }
            return match evidence {
                Some(ev) => AddVote::Equivocation(ev),
                None => AddVote::Duplicate,
            };
        }
        *tally.power_by_value.entry(vote.block_id).or_insert(0) += power;
        tally.power_any += power;
        let validator = vote.validator;
        tally.votes.insert(validator, vote);
        if round.senders.insert(validator) {
            round.sender_power += power;
        }
        AddVote::Added
    }

    /// Notes that `validator` sent a message (a proposal) in `round`.
    pub fn note_sender(&mut self, set: &ValidatorSet, round: Round, validator: PublicKey) {
        let power = set.power_of(&validator);
        if power == 0 {
            return;
        }
        let r = self.rounds.entry(round).or_default();
        if r.senders.insert(validator) {
            r.sender_power += power;
        }
    }

    /// The tally of one type in one round, if any vote arrived.
    pub fn tally(&self, round: Round, vote_type: VoteType) -> Option<&VoteTally> {
        self.rounds.get(&round).map(|r| match vote_type {
            VoteType::Prevote => &r.prevotes,
            VoteType::Precommit => &r.precommits,
        })
    }

    /// Power that voted `value` with `vote_type` in `round`.
    pub fn power_for(&self, round: Round, vote_type: VoteType, value: Option<&BlockId>) -> u64 {
        self.tally(round, vote_type)
            .map_or(0, |t| t.power_for(value))
    }

    /// Power of all votes of `vote_type` in `round`.
    pub fn power_any(&self, round: Round, vote_type: VoteType) -> u64 {
        self.tally(round, vote_type).map_or(0, |t| t.power_any())
    }

    /// Power of the validators heard from in `round`.
    pub fn sender_power(&self, round: Round) -> u64 {
        self.rounds.get(&round).map_or(0, |r| r.sender_power)
    }

    /// The highest round above `round` from which more than 1/3 of the power has
    /// been heard, if any.
    pub fn skip_target(&self, set: &ValidatorSet, round: Round) -> Option<Round> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.rounds
            .range((Excluded(round), Unbounded))
            .rev()
            .find(|(_, r)| set.is_one_third_plus(r.sender_power))
            .map(|(r, _)| *r)
    }

    /// Rounds that have any votes.
    pub fn rounds(&self) -> impl Iterator<Item = Round> + '_ {
        self.rounds.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Hash, Height, Keypair, Timestamp, Validator};

    fn setup(powers: &[u64]) -> (Vec<Keypair>, ValidatorSet) {
        let keys: Vec<Keypair> = (0..powers.len())
            .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
            .collect();
        let set = ValidatorSet::new(
            keys.iter()
                .zip(powers)
                .map(|(k, p)| Validator {
                    public_key: k.public(),
                    power: *p,
                    name: String::new(),
                })
                .collect(),
        )
        .unwrap();
        (keys, set)
    }

    fn vote(k: &Keypair, t: VoteType, r: u32, id: Option<Hash>) -> Vote {
        Vote::new_signed(k, "c", t, Height(1), Round(r), id, Timestamp(0))
    }

    #[test]
    fn counts_power_per_value_and_detects_equivocation() {
        let (keys, set) = setup(&[1, 1, 1, 1]);
        let a = Some(Hash::digest(b"a"));
        let b = Some(Hash::digest(b"b"));
        let mut vk = VoteKeeper::default();
        assert_eq!(
            vk.add(&set, vote(&keys[0], VoteType::Prevote, 0, a)),
            AddVote::Added
        );
        assert_eq!(
            vk.add(&set, vote(&keys[0], VoteType::Prevote, 0, a)),
            AddVote::Duplicate
        );
        assert!(matches!(
            vk.add(&set, vote(&keys[0], VoteType::Prevote, 0, b)),
            AddVote::Equivocation(_)
        ));
        // Reported once only.
        assert_eq!(
            vk.add(&set, vote(&keys[0], VoteType::Prevote, 0, None)),
            AddVote::Duplicate
        );
        // Conflicting votes count for nil and for supported values; "any" once.
        assert_eq!(vk.power_for(Round(0), VoteType::Prevote, a.as_ref()), 1);
        assert_eq!(vk.power_for(Round(0), VoteType::Prevote, b.as_ref()), 0);
        assert_eq!(vk.power_for(Round(0), VoteType::Prevote, None), 1);
        assert_eq!(vk.power_any(Round(0), VoteType::Prevote), 1);
        vk.add(&set, vote(&keys[1], VoteType::Prevote, 0, a));
        vk.add(&set, vote(&keys[2], VoteType::Prevote, 0, a));
        let t = vk.tally(Round(0), VoteType::Prevote).unwrap();
        assert_eq!(t.quorum_value(&set), Some(a));
        assert_eq!(vk.power_any(Round(0), VoteType::Precommit), 0);
        let outsider = Keypair::from_seed([99; 32]);
        assert_eq!(
            vk.add(&set, vote(&outsider, VoteType::Prevote, 0, a)),
            AddVote::NotValidator
        );
    }

    #[test]
    fn an_equivocator_counts_only_for_supported_values() {
        let (keys, set) = setup(&[1, 1, 1, 1]);
        let mut vk = VoteKeeper::default();
        let values: Vec<Option<Hash>> = (0..6u8).map(|i| Some(Hash::digest(&[i]))).collect();
        // A flood of values from one validator: only its first counts.
        for v in &values {
            vk.add(&set, vote(&keys[0], VoteType::Precommit, 0, *v));
        }
        let counted = |vk: &VoteKeeper, v: &Option<Hash>| {
            vk.power_for(Round(0), VoteType::Precommit, v.as_ref())
        };
        assert_eq!(counted(&vk, &values[0]), 1);
        assert_eq!(counted(&vk, &values[5]), 0);
        // Once another validator votes for a value first, the conflicting vote
        // for it counts when it arrives again.
        vk.add(&set, vote(&keys[1], VoteType::Precommit, 0, values[5]));
        assert_eq!(
            vk.add(&set, vote(&keys[0], VoteType::Precommit, 0, values[5])),
            AddVote::Duplicate
        );
        assert_eq!(counted(&vk, &values[5]), 2);
        assert_eq!(vk.power_any(Round(0), VoteType::Precommit), 2);
        let t = vk.tally(Round(0), VoteType::Precommit).unwrap();
        assert_eq!(t.votes().count(), 3);
    }

    #[test]
    fn skip_needs_more_than_a_third_of_senders() {
        let (keys, set) = setup(&[1, 1, 1, 1]);
        let mut vk = VoteKeeper::default();
        vk.add(&set, vote(&keys[0], VoteType::Prevote, 3, None));
        assert_eq!(vk.skip_target(&set, Round(0)), None);
        // The same validator again in another type does not count twice.
        vk.add(&set, vote(&keys[0], VoteType::Precommit, 3, None));
        assert_eq!(vk.skip_target(&set, Round(0)), None);
        vk.note_sender(&set, Round(3), keys[1].public());
        assert_eq!(vk.skip_target(&set, Round(0)), Some(Round(3)));
        assert_eq!(vk.skip_target(&set, Round(3)), None);
    }
}
