//! The validator set, voting-power arithmetic and proposer rotation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Canonical, Hash, PublicKey, TypesError};

/// Upper bound on total voting power, so that priority arithmetic cannot overflow
/// (the same bound CometBFT uses: `i64::MAX / 8`).
pub const MAX_TOTAL_POWER: u64 = (i64::MAX / 8) as u64;

/// One member of the validator set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// The key that signs its votes and proposals; also its node identity.
    pub public_key: PublicKey,
    /// Voting power, at least 1.
    pub power: u64,
    /// A human-readable name (the organization's moniker).
    #[serde(default)]
    pub name: String,
}

/// A fixed, ordered set of validators. The order (ascending public key) is
/// canonical: vote bitmaps and proposer ties refer to it.
#[derive(Clone, Debug)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    index: HashMap<PublicKey, usize>,
    total_power: u64,
}

impl PartialEq for ValidatorSet {
    fn eq(&self, other: &Self) -> bool {
        self.validators == other.validators
    }
}

impl Eq for ValidatorSet {}

impl ValidatorSet {
    /// A set of the given keys, each with power 1 (test fixtures).
    #[cfg(test)]
    pub(crate) fn equal_power<'a>(
        keys: impl IntoIterator<Item = &'a crate::types::Keypair>,
    ) -> ValidatorSet {
        ValidatorSet::new(
            keys.into_iter()
                .map(|k| Validator {
                    public_key: k.public(),
                    power: 1,
                    name: String::new(),
                })
                .collect(),
        )
        .expect("distinct keys")
    }

    /// Builds a set: at least one validator, no duplicate key, every power at least
    /// 1, total at most [`MAX_TOTAL_POWER`].
    pub fn new(mut validators: Vec<Validator>) -> Result<ValidatorSet, TypesError> {
        if validators.is_empty() {
            return Err(TypesError::InvalidValidatorSet("no validators".into()));
        }
        validators.sort_by_key(|v| v.public_key);
        let mut total: u64 = 0;
        let mut index = HashMap::with_capacity(validators.len());
        for (i, v) in validators.iter().enumerate() {
            if v.power == 0 {
                return Err(TypesError::InvalidValidatorSet(format!(
                    "validator {} has zero voting power",
                    v.public_key
                )));
            }
            total = total
                .checked_add(v.power)
                .filter(|t| *t <= MAX_TOTAL_POWER)
                .ok_or_else(|| {
                    TypesError::InvalidValidatorSet(format!(
                        "total voting power exceeds {MAX_TOTAL_POWER}"
                    ))
                })?;
            if index.insert(v.public_key, i).is_some() {
                return Err(TypesError::InvalidValidatorSet(format!(
                    "validator {} listed twice",
                    v.public_key
                )));
            }
        }
        Ok(ValidatorSet {
            validators,
            index,
            total_power: total,
        })
    }

    /// The validators in canonical order.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// Number of validators.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false: a set has at least one validator.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// Sum of all voting power.
    pub fn total_power(&self) -> u64 {
        self.total_power
    }

    /// The canonical index of a validator.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// A validator by key.
    pub fn get(&self, key: &PublicKey) -> Option<&Validator> {
        self.index_of(key).map(|i| &self.validators[i])
    }

    /// Voting power of `key`, zero if it is not a validator.
    pub fn power_of(&self, key: &PublicKey) -> u64 {
        self.get(key).map_or(0, |v| v.power)
    }

    /// True if `power` is strictly more than 2/3 of the total.
    pub fn is_quorum(&self, power: u64) -> bool {
        (power as u128) * 3 > (self.total_power as u128) * 2
    }

    /// True if `power` is strictly more than 1/3 of the total: at least one
    /// correct validator is among its holders.
    pub fn is_one_third_plus(&self, power: u64) -> bool {
        (power as u128) * 3 > self.total_power as u128
    }

    /// Hash over the canonical encoding of the set.
    pub fn hash(&self) -> Hash {
        let mut c = Canonical::tagged("consort/validators/v1");
        c.u32(self.validators.len() as u32);
        for v in &self.validators {
            c.bytes(v.public_key.as_bytes()).u64(v.power);
        }
        c.digest()
    }
}

/// Weighted round-robin proposer selection, the priority algorithm of CometBFT:
/// every step each validator's priority grows by its power, the highest priority
/// proposes (ties go to the lowest key), and the proposer's priority drops by the
/// total power. Priorities are re-centred and re-scaled so they stay bounded.
///
/// Proposer of (height h, round r): start from zero priorities, take one step
/// per height up to h (the genesis step included), then r more steps in one call.
#[derive(Clone, Debug)]
pub struct ProposerSchedule {
    priorities: Vec<i64>,
    powers: Vec<i64>,
    total: i64,
    /// Index of the proposer chosen by the last step.
    proposer: usize,
    height: u64,
}

impl ProposerSchedule {
    /// The schedule at height 1 (round 0).
    pub fn genesis(set: &ValidatorSet) -> ProposerSchedule {
        let powers: Vec<i64> = set.validators.iter().map(|v| v.power as i64).collect();
        let mut s = ProposerSchedule {
            priorities: vec![0; powers.len()],
            total: set.total_power as i64,
            powers,
            proposer: 0,
            height: 1,
        };
        s.increment(1);
        s
    }

    /// The schedule at `height` (at least 1). Costs one step per height.
    pub fn at_height(set: &ValidatorSet, height: u64) -> ProposerSchedule {
        let mut s = ProposerSchedule::genesis(set);
        while s.height < height {
            s.advance_height();
        }
        s
    }

    /// The height this schedule is at.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Moves to the next height.
    pub fn advance_height(&mut self) {
        self.increment(1);
        self.height += 1;
    }

    /// Index (in canonical order) of the proposer of `round` at this height.
    pub fn proposer_index(&self, round: u32) -> usize {
        if round == 0 {
            return self.proposer;
        }
        let mut copy = self.clone();
        copy.increment(round);
        copy.proposer
    }

    fn increment(&mut self, times: u32) {
        let diff_max = 2 * self.total;
        self.rescale(diff_max);
        self.shift_by_average();
        for _ in 0..times {
            for (p, w) in self.priorities.iter_mut().zip(&self.powers) {
                *p = p.saturating_add(*w);
            }
            let mut best = 0;
            for i in 1..self.priorities.len() {
                // Ties go to the lower index, which is the lower key.
                if self.priorities[i] > self.priorities[best] {
                    best = i;
                }
            }
            self.priorities[best] = self.priorities[best].saturating_sub(self.total);
            self.proposer = best;
        }
    }

    fn rescale(&mut self, diff_max: i64) {
        let (Some(max), Some(min)) = (self.priorities.iter().max(), self.priorities.iter().min())
        else {
            return;
        };
        let diff = max.saturating_sub(*min);
        if diff > diff_max && diff_max > 0 {
            let ratio = (diff + diff_max - 1) / diff_max;
            for p in &mut self.priorities {
                *p /= ratio;
            }
        }
    }

    fn shift_by_average(&mut self) {
        let n = self.priorities.len() as i128;
        let sum: i128 = self.priorities.iter().map(|p| *p as i128).sum();
        let avg = sum.div_euclid(n) as i64;
        for p in &mut self.priorities {
            *p = p.saturating_sub(avg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Keypair;

    fn set(powers: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, p)| Validator {
                    public_key: Keypair::from_seed([i as u8 + 1; 32]).public(),
                    power: *p,
                    name: format!("v{i}"),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn quorum_is_strictly_more_than_two_thirds() {
        let s = set(&[1, 1, 1, 1]);
        assert!(!s.is_quorum(2));
        assert!(s.is_quorum(3));
        let s = set(&[1, 1, 1]);
        // 2 of 3 is exactly 2/3: not a quorum.
        assert!(!s.is_quorum(2));
        assert!(s.is_quorum(3));
        assert!(!s.is_one_third_plus(1));
        assert!(s.is_one_third_plus(2));
    }

    #[test]
    fn rejects_bad_sets() {
        assert!(ValidatorSet::new(vec![]).is_err());
        let k = Keypair::from_seed([1; 32]).public();
        let v = Validator {
            public_key: k,
            power: 1,
            name: String::new(),
        };
        assert!(ValidatorSet::new(vec![v.clone(), v.clone()]).is_err());
        assert!(
            ValidatorSet::new(vec![Validator {
                power: 0,
                ..v.clone()
            }])
            .is_err()
        );
        assert!(
            ValidatorSet::new(vec![Validator {
                power: u64::MAX,
                ..v
            }])
            .is_err()
        );
    }

    #[test]
    fn equal_power_rotates_through_everyone() {
        let s = set(&[1, 1, 1, 1]);
        let mut sched = ProposerSchedule::genesis(&s);
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(sched.proposer_index(0));
            sched.advance_height();
        }
        // Every validator proposes exactly twice in 8 heights.
        for i in 0..4 {
            assert_eq!(seen.iter().filter(|x| **x == i).count(), 2, "{seen:?}");
        }
        // Rounds rotate too.
        let sched = ProposerSchedule::genesis(&s);
        let rounds: Vec<usize> = (0..4).map(|r| sched.proposer_index(r)).collect();
        let mut sorted = rounds.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 4, "{rounds:?}");
    }

    #[test]
    fn weighted_rotation_follows_power() {
        let s = set(&[1, 2, 3, 4]);
        let mut sched = ProposerSchedule::genesis(&s);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..1000 {
            let power = s.validators()[sched.proposer_index(0)].power;
            *counts.entry(power).or_insert(0) += 1;
            sched.advance_height();
        }
        // Each proposes in proportion to its power.
        let counts: Vec<(u64, usize)> = counts.into_iter().collect();
        assert_eq!(counts, vec![(1, 100), (2, 200), (3, 300), (4, 400)]);
    }

    #[test]
    fn at_height_matches_stepping() {
        let s = set(&[5, 1, 7]);
        let mut sched = ProposerSchedule::genesis(&s);
        for h in 1..50u64 {
            let direct = ProposerSchedule::at_height(&s, h);
            assert_eq!(direct.proposer_index(0), sched.proposer_index(0));
            assert_eq!(direct.proposer_index(3), sched.proposer_index(3));
            sched.advance_height();
        }
    }
}
