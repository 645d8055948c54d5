//! Commit certificates: more than 2/3 of the voting power precommitting to one
//! block. Checked the same way everywhere (consensus, block sync, state sync).

use std::collections::HashSet;

use super::{
    BlockId, Canonical, Hash, Height, PublicKey, Round, Signature, SignedItem, Timestamp,
    ValidatorSet, Vote, VoteType, verify_batch,
};

/// One precommit inside a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitSig {
    /// The precommitting validator.
    pub validator: PublicKey,
    /// Time of its precommit.
    pub time: Timestamp,
    /// Its precommit signature.
    pub signature: Signature,
}

/// A commit certificate for `block_id` at `height`, decided in `round`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// Height of the committed block.
    pub height: Height,
    /// Round whose precommits these are.
    pub round: Round,
    /// The committed block.
    pub block_id: BlockId,
    /// The precommits, ordered by validator key.
    pub signatures: Vec<CommitSig>,
}

/// Why a commit does not certify its block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The commit is for another height.
    #[error("commit is for height {got}, expected {expected}")]
    WrongHeight {
        /// Height expected.
        expected: Height,
        /// Height in the commit.
        got: Height,
    },
    /// The commit is for another block.
    #[error("commit is for block {got}, expected {expected}")]
    WrongBlock {
        /// Block id expected.
        expected: BlockId,
        /// Block id in the commit.
        got: BlockId,
    },
    /// A signer is not in the validator set.
    #[error("commit signed by unknown key {0}")]
    UnknownSigner(PublicKey),
    /// A validator appears twice.
    #[error("validator {0} signed the commit twice")]
    DuplicateSigner(PublicKey),
    /// Not enough power signed.
    #[error("commit carries {signed} of {total} voting power, more than 2/3 needed")]
    InsufficientPower {
        /// Power that signed.
        signed: u64,
        /// Total power of the set.
        total: u64,
    },
    /// A signature does not verify.
    #[error("bad precommit signature of validator {0}")]
    BadSignature(PublicKey),
}

impl Commit {
    /// Builds a commit from precommits for `block_id` (others are ignored). The
    /// caller has checked that they carry a quorum.
    pub fn from_precommits<'a>(
        height: Height,
        round: Round,
        block_id: BlockId,
        votes: impl IntoIterator<Item = &'a Vote>,
    ) -> Commit {
        let mut signatures: Vec<CommitSig> = votes
            .into_iter()
            .filter(|v| {
                v.vote_type == VoteType::Precommit
                    && v.height == height
                    && v.round == round
                    && v.block_id == Some(block_id)
            })
            .map(|v| CommitSig {
                validator: v.validator,
                time: v.time,
                signature: v.signature,
            })
            .collect();
        signatures.sort_by_key(|s| s.validator);
        signatures.dedup_by(|a, b| a.validator == b.validator);
        Commit {
            height,
            round,
            block_id,
            signatures,
        }
    }

    /// The precommit a signature of this commit stands for.
    pub fn vote(&self, sig: &CommitSig) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height: self.height,
            round: self.round,
            block_id: Some(self.block_id),
            time: sig.time,
            validator: sig.validator,
            signature: sig.signature,
        }
    }

    /// The precommits of this commit.
    pub fn votes(&self) -> impl Iterator<Item = Vote> + '_ {
        self.signatures.iter().map(|s| self.vote(s))
    }

    /// Hash over the canonical encoding, carried in the next block's header.
    pub fn hash(&self) -> Hash {
        let mut c = Canonical::tagged("consort/commit/v1");
        c.height(self.height)
            .round(self.round)
            .hash(&self.block_id)
            .u32(self.signatures.len() as u32);
        for s in &self.signatures {
            c.bytes(s.validator.as_bytes())
                .time(s.time)
                .bytes(s.signature.as_bytes());
        }
        c.digest()
    }

    /// Checks that the commit certifies `block_id` at `height` for `set`: every
    /// signer is a validator and appears once, they hold more than 2/3 of the
    /// power, and every signature verifies (in one batch).
    pub fn verify(
        &self,
        chain_id: &str,
        set: &ValidatorSet,
        height: Height,
        block_id: &BlockId,
    ) -> Result<(), CommitError> {
        self.check_certifies(set, height, block_id)?;
        self.check_signatures(chain_id)
    }

    /// Everything [`Commit::verify`] checks but the signatures themselves: the
    /// height, the block, and the signers (validators, once each, more than
    /// 2/3 of the power).
    pub fn check_certifies(
        &self,
        set: &ValidatorSet,
        height: Height,
        block_id: &BlockId,
    ) -> Result<(), CommitError> {
        if self.height != height {
            return Err(CommitError::WrongHeight {
                expected: height,
                got: self.height,
            });
        }
        if &self.block_id != block_id {
            return Err(CommitError::WrongBlock {
                expected: *block_id,
                got: self.block_id,
            });
        }
        self.check_signers(set)
    }

    /// Like [`Commit::verify`] without the expected height and block: checks only
    /// that the commit is a valid certificate of its own block.
    pub fn verify_signatures(&self, chain_id: &str, set: &ValidatorSet) -> Result<(), CommitError> {
        self.check_signers(set)?;
        self.check_signatures(chain_id)
    }

    /// Verifies every signature, in one batch.
    fn check_signatures(&self, chain_id: &str) -> Result<(), CommitError> {
        let msgs = self.signed_messages(chain_id);
        verify_batch(&self.signed_items(&msgs))
            .map_err(|i| CommitError::BadSignature(self.signatures[i].validator))
    }

    /// Every signer is a validator and appears once, and they hold more than
    /// 2/3 of the power. The signatures themselves are not checked.
    fn check_signers(&self, set: &ValidatorSet) -> Result<(), CommitError> {
        let mut seen = HashSet::with_capacity(self.signatures.len());
        let mut power: u64 = 0;
        for s in &self.signatures {
            let p = set.power_of(&s.validator);
            if p == 0 {
                return Err(CommitError::UnknownSigner(s.validator));
            }
            if !seen.insert(s.validator) {
                return Err(CommitError::DuplicateSigner(s.validator));
            }
            power += p;
        }
        if !set.is_quorum(power) {
            return Err(CommitError::InsufficientPower {
                signed: power,
                total: set.total_power(),
            });
        }
        Ok(())
    }

    /// The precommit sign bytes of each signature, in order.
    fn signed_messages(&self, chain_id: &str) -> Vec<Vec<u8>> {
        self.signatures
            .iter()
            .map(|s| {
                Vote::sign_bytes(
                    chain_id,
                    VoteType::Precommit,
                    self.height,
                    self.round,
                    Some(&self.block_id),
                    s.time,
                )
            })
            .collect()
    }

    /// The signatures with their messages, for batch verification.
    fn signed_items<'a>(&'a self, msgs: &'a [Vec<u8>]) -> Vec<SignedItem<'a>> {
        self.signatures
            .iter()
            .zip(msgs)
            .map(|(s, m)| SignedItem {
                key: &s.validator,
                msg: m,
                sig: &s.signature,
            })
            .collect()
    }
}

/// Verifies several commits, each against its expected height and block, with
/// the signatures of all of them in one batch (a large batch verifies several
/// times faster per signature than a commit's few). Returns one verdict per
/// commit, in order; when the batch fails each commit is checked alone, so the
/// verdicts are exactly those of [`Commit::verify`].
pub fn verify_commits(
    chain_id: &str,
    set: &ValidatorSet,
    commits: &[(&Commit, Height, BlockId)],
) -> Vec<Result<(), CommitError>> {
    let mut verdicts: Vec<Result<(), CommitError>> = commits
        .iter()
        .map(|(c, height, block_id)| c.check_certifies(set, *height, block_id))
        .collect();
    let msgs: Vec<Vec<Vec<u8>>> = commits
        .iter()
        .zip(&verdicts)
        .map(|((c, _, _), v)| {
            if v.is_ok() {
                c.signed_messages(chain_id)
            } else {
                Vec::new()
            }
        })
        .collect();
    let items: Vec<SignedItem<'_>> = commits
        .iter()
        .zip(&msgs)
        .flat_map(|((c, _, _), m)| c.signed_items(m))
        .collect();
    if verify_batch(&items).is_err() {
        for ((c, _, _), v) in commits.iter().zip(verdicts.iter_mut()) {
            if v.is_ok() {
                *v = c.check_signatures(chain_id);
            }
        }
    }
    verdicts
}

impl Commit {
    /// The voting-power weighted median of the precommit times: the time of the
    /// next block. Honest validators hold more than half of the power that signed,
    /// so the median lies between honest clocks.
    pub fn median_time(&self, set: &ValidatorSet) -> Timestamp {
        let mut times: Vec<(Timestamp, u64)> = self
            .signatures
            .iter()
            .map(|s| (s.time, set.power_of(&s.validator)))
            .collect();
        times.sort();
        let total: u64 = times.iter().map(|(_, p)| p).sum();
        let mut acc = 0;
        for (t, p) in &times {
            acc += p;
            if acc * 2 > total {
                return *t;
            }
        }
        times.last().map_or(Timestamp(0), |(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Keypair, Validator};

    fn keys(n: u8) -> Vec<Keypair> {
        (1..=n).map(|i| Keypair::from_seed([i; 32])).collect()
    }

    fn set_of(keys: &[Keypair], powers: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            keys.iter()
                .zip(powers)
                .map(|(k, p)| Validator {
                    public_key: k.public(),
                    power: *p,
                    name: String::new(),
                })
                .collect(),
        )
        .unwrap()
    }

    fn commit_by(keys: &[Keypair], id: BlockId) -> Commit {
        let votes: Vec<Vote> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Vote::new_signed(
                    k,
                    "c",
                    VoteType::Precommit,
                    Height(5),
                    Round(1),
                    Some(id),
                    Timestamp(100 + i as u64),
                )
            })
            .collect();
        Commit::from_precommits(Height(5), Round(1), id, &votes)
    }

    #[test]
    fn batched_verdicts_equal_one_by_one() {
        let ks = keys(4);
        let set = set_of(&ks, &[1, 1, 1, 1]);
        let id = Hash::digest(b"b");
        let other = Hash::digest(b"other");
        let good = commit_by(&ks, id);
        let mut forged = commit_by(&ks[..3], id);
        forged.signatures[1].signature = good.signatures[3].signature;
        let short = commit_by(&ks[..2], id);
        let cases: Vec<(&Commit, Height, BlockId)> = vec![
            (&good, Height(5), id),
            (&forged, Height(5), id),
            (&good, Height(6), id),
            (&good, Height(5), other),
            (&short, Height(5), id),
            (&good, Height(5), id),
        ];
        let batched = verify_commits("c", &set, &cases);
        let alone: Vec<_> = cases
            .iter()
            .map(|(c, h, b)| c.verify("c", &set, *h, b))
            .collect();
        assert_eq!(batched, alone);
        assert!(batched[0].is_ok() && batched[5].is_ok());
        assert!(matches!(batched[1], Err(CommitError::BadSignature(_))));
        // All good: one batch, all Ok.
        let fine = verify_commits("c", &set, &[(&good, Height(5), id), (&good, Height(5), id)]);
        assert_eq!(fine, vec![Ok(()), Ok(())]);
    }

    #[test]
    fn verify_table() {
        let ks = keys(4);
        let set = set_of(&ks, &[1, 1, 1, 1]);
        let id = Hash::digest(b"b");
        let good = commit_by(&ks[..3], id);
        assert_eq!(good.verify("c", &set, Height(5), &id), Ok(()));

        let two = commit_by(&ks[..2], id);
        assert!(matches!(
            two.verify("c", &set, Height(5), &id),
            Err(CommitError::InsufficientPower {
                signed: 2,
                total: 4
            })
        ));
        assert!(matches!(
            good.verify("c", &set, Height(6), &id),
            Err(CommitError::WrongHeight { .. })
        ));
        assert!(matches!(
            good.verify("c", &set, Height(5), &Hash::ZERO),
            Err(CommitError::WrongBlock { .. })
        ));
        assert!(matches!(
            good.verify("other", &set, Height(5), &id),
            Err(CommitError::BadSignature(_))
        ));
        let mut dup = good.clone();
        dup.signatures.push(dup.signatures[0].clone());
        assert!(matches!(
            dup.verify("c", &set, Height(5), &id),
            Err(CommitError::DuplicateSigner(_))
        ));
        let stranger = commit_by(&keys(5)[4..], id);
        let mut unknown = good.clone();
        unknown.signatures.push(stranger.signatures[0].clone());
        assert!(matches!(
            unknown.verify("c", &set, Height(5), &id),
            Err(CommitError::UnknownSigner(_))
        ));
        let mut forged = commit_by(&ks, id);
        forged.signatures[3].time = Timestamp(1);
        assert!(matches!(
            forged.verify("c", &set, Height(5), &id),
            Err(CommitError::BadSignature(_))
        ));
    }

    #[test]
    fn weighted_power_counts() {
        let ks = keys(4);
        // One validator with 7 of 10: alone it is a quorum.
        let set = set_of(&ks, &[7, 1, 1, 1]);
        let id = Hash::digest(b"b");
        let heavy = commit_by(&ks[..1], id);
        assert_eq!(heavy.verify("c", &set, Height(5), &id), Ok(()));
        let light = commit_by(&ks[1..], id);
        assert!(light.verify("c", &set, Height(5), &id).is_err());
    }

    #[test]
    fn median_time_is_weighted() {
        let ks = keys(4);
        let id = Hash::digest(b"b");
        let c = commit_by(&ks, id); // times 100..103 for keys in input order
        let even = set_of(&ks, &[1, 1, 1, 1]);
        let t = c.median_time(&even);
        assert!(t == Timestamp(101) || t == Timestamp(102));
        let heavy = set_of(&ks, &[10, 1, 1, 1]);
        assert_eq!(c.median_time(&heavy), Timestamp(100));
    }
}
