//! Evidence of equivocation: the pool of evidence seen and not yet committed,
//! the checks a piece of evidence passes before it enters the pool or a block,
//! and its gossip.
//!
//! Evidence enters the pool when the core reports two conflicting votes, or when
//! a peer gossips it (verified first: both votes signed by the same validator of
//! the set, same height, round and type, different block ids). A proposer puts
//! pooled evidence in its block; a block is invalid if it carries evidence that
//! an earlier block committed ([`crate::storage::EvidenceStore`]), so that each
//! equivocation is committed exactly once, and the pool forgets evidence once a
//! block commits it.

use std::collections::{BTreeMap, HashSet};

use tracing::{info, warn};

use super::actor::Actor;
use crate::net::NetMessage;
use crate::storage::{EvidenceStore, StorageError};
use crate::types::{
    DuplicateVote, Evidence, Hash, Height, PublicKey, Round, TypesError, ValidatorSet, VoteType,
};

/// Evidence older than this many heights is neither pooled nor accepted in a
/// block: honest proposers commit evidence within a few heights, and the bound
/// keeps the window that block validity depends on finite.
pub const EVIDENCE_MAX_AGE: u64 = 10_000;

/// Most pieces of evidence in one block.
pub const MAX_BLOCK_EVIDENCE: usize = 32;

/// Most pieces of evidence kept waiting for a block. Beyond it new evidence is
/// dropped: a third of the validators equivocating in every slot cannot make the
/// node buffer without bound.
pub const MAX_POOL: usize = 1024;

/// Most pieces of evidence in one gossip frame.
pub const GOSSIP_BATCH: usize = 32;

/// Why evidence is refused.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Signatures, signer or pairing are wrong.
    #[error("invalid evidence: {0}")]
    Invalid(#[from] TypesError),
    /// A block already committed it.
    #[error("evidence already committed at height {0}")]
    Committed(Height),
    /// Its height is too far below the current one.
    #[error(
        "evidence of height {height} is older than {EVIDENCE_MAX_AGE} heights (current {current})"
    )]
    TooOld {
        /// The evidence's height.
        height: Height,
        /// The height it was checked at.
        current: Height,
    },
    /// Its height is not below the height it was checked at.
    #[error("evidence of height {height} is not from a height below {current}")]
    NotBelow {
        /// The evidence's height.
        height: Height,
        /// The height it was checked at.
        current: Height,
    },
    /// The index could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl EvidenceError {
    /// Whether the sender is to blame (rather than being ahead of us, or our
    /// store failing).
    pub fn is_misbehaviour(&self) -> bool {
        matches!(self, EvidenceError::Invalid(_))
    }
}

/// Checks evidence for inclusion in a block at `height` (or, with `height` one
/// above the current height, for the pool): valid, of a height below `height`
/// and not older than [`EVIDENCE_MAX_AGE`], and not committed before.
pub fn check_evidence(
    ev: &Evidence,
    chain_id: &str,
    set: &ValidatorSet,
    height: Height,
    store: &dyn EvidenceStore,
) -> Result<(), EvidenceError> {
    let Evidence::DuplicateVote(d) = ev;
    if d.first.height >= height {
        return Err(EvidenceError::NotBelow {
            height: d.first.height,
            current: height,
        });
    }
    if d.first.height.0.saturating_add(EVIDENCE_MAX_AGE) < height.0 {
        return Err(EvidenceError::TooOld {
            height: d.first.height,
            current: height,
        });
    }
    ev.verify(chain_id, set)?;
    if let Some(at) = store.evidence_committed_at(&ev.hash())? {
        // An index entry at this height or above is left from blocks a crash
        // took back (the index is written ahead of the log's fsync): the block
        // that carries it again is the same block.
        if at < height {
            return Err(EvidenceError::Committed(at));
        }
    }
    Ok(())
}

/// The slot of an equivocation: (validator, height, round, vote type).
type Slot = (PublicKey, Height, Round, VoteType);

/// Evidence seen and not yet committed, by hash (so in a stable order), at
/// most one piece per equivocated slot: a validator that signs many
/// conflicting votes in one slot makes many valid pairs, and without this each
/// of them would take a place in the pool and in blocks.
///
/// Slots committed recently are remembered too (in memory, at most
/// [`MAX_COMMITTED_SLOTS`]), so that another pair of votes of a slot a block
/// already punished is not pooled and committed again.
#[derive(Debug, Default)]
pub struct EvidencePool {
    pending: BTreeMap<Hash, DuplicateVote>,
    slots: HashSet<Slot>,
    committed: BTreeMap<Slot, Height>,
}

/// Committed slots remembered by the pool.
pub const MAX_COMMITTED_SLOTS: usize = 4 * MAX_POOL;

impl EvidencePool {
    /// Adds checked evidence; false if it (or other evidence of its slot) was
    /// there already, or the pool is full.
    pub fn insert(&mut self, ev: DuplicateVote) -> bool {
        if self.pending.len() >= MAX_POOL || self.has_slot(&ev) {
            return false;
        }
        self.slots.insert(ev.slot());
        self.pending.insert(ev.hash(), ev).is_none()
    }

    /// Whether the pool holds evidence of this slot, or a block committed
    /// evidence of it recently.
    pub fn has_slot(&self, ev: &DuplicateVote) -> bool {
        let slot = ev.slot();
        self.slots.contains(&slot) || self.committed.contains_key(&slot)
    }

    /// Whether the pool holds this evidence.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.pending.contains_key(hash)
    }

    /// Pieces of evidence in the pool.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Evidence for a block at `height`: of lower heights, at most
    /// [`MAX_BLOCK_EVIDENCE`].
    pub fn for_block(&self, height: Height) -> Vec<Evidence> {
        self.pending
            .values()
            .filter(|e| e.first.height < height)
            .take(MAX_BLOCK_EVIDENCE)
            .cloned()
            .map(Evidence::DuplicateVote)
            .collect()
    }

    /// Everything pooled, for a peer that just connected.
    pub fn all(&self) -> Vec<Evidence> {
        self.pending
            .values()
            .cloned()
            .map(Evidence::DuplicateVote)
            .collect()
    }

    /// Forgets evidence a block committed, and evidence too old to be committed
    /// after `height`.
    pub fn on_commit(&mut self, height: Height, committed: &[Evidence]) {
        // Other pairs of a committed slot prove nothing more.
        let done: HashSet<Slot> = committed
            .iter()
            .map(|ev| {
                let Evidence::DuplicateVote(d) = ev;
                d.slot()
            })
            .collect();
        self.pending.retain(|_, e| {
            !done.contains(&e.slot())
                && e.first.height.0.saturating_add(EVIDENCE_MAX_AGE) > height.0
        });
        self.slots = self.pending.values().map(DuplicateVote::slot).collect();
        for slot in done {
            self.committed.insert(slot, height);
        }
        if self.committed.len() > MAX_COMMITTED_SLOTS {
            // Forget the slots committed longest ago.
            let mut by_age: Vec<(Height, Slot)> =
                self.committed.iter().map(|(s, h)| (*h, *s)).collect();
            by_age.sort();
            for (_, s) in by_age
                .iter()
                .take(self.committed.len() - MAX_COMMITTED_SLOTS)
            {
                self.committed.remove(s);
            }
        }
    }
}

impl Actor {
    /// Evidence the core detected: pool it and tell the peers.
    pub(super) fn on_detected_evidence(&mut self, ev: DuplicateVote) {
        warn!(validator = %ev.first.validator, height = %ev.first.height, round = %ev.first.round, kind = %ev.first.vote_type, "equivocation detected");
        if self.evidence_pool.has_slot(&ev) {
            return;
        }
        if self.evidence_pool.insert(ev.clone()) {
            self.metrics.evidence.inc();
            self.net
                .broadcast(NetMessage::Evidence(vec![Evidence::DuplicateVote(ev)]));
        }
    }

    /// Evidence gossiped by `peer`: checked, then pooled. Invalid evidence costs
    /// the peer points; evidence we cannot judge yet (a peer ahead of us) or
    /// already committed is ignored.
    pub(super) fn on_evidence_msg(&mut self, peer: PublicKey, list: Vec<Evidence>) {
        // Evidence of the current height is fine for the pool: it goes into a
        // later block.
        let next = self.core.height().next();
        for ev in list {
            // Another pair of votes of a slot already pooled (or punished)
            // adds nothing: skipped before its signatures are checked.
            let Evidence::DuplicateVote(d) = &ev;
            if self.evidence_pool.has_slot(d) {
                continue;
            }
            let checked = check_evidence(
                &ev,
                self.rules.chain_id(),
                self.rules.validators(),
                next,
                self.store.as_ref(),
            );
            match checked {
                Ok(()) => {
                    let Evidence::DuplicateVote(d) = ev;
                    info!(peer = %peer.short(), validator = %d.first.validator, height = %d.first.height, "evidence received");
                    if self.evidence_pool.insert(d) {
                        self.metrics.evidence.inc();
                    }
                }
                Err(e) if e.is_misbehaviour() => {
                    self.penalize(&peer, super::PeerFault::InvalidEvidence);
                    return;
                }
                Err(EvidenceError::Storage(e)) => {
                    warn!(error = %e, "cannot check evidence against the index");
                }
                Err(_) => {}
            }
        }
    }

    /// Sends the pool to a peer that just connected.
    pub(super) fn send_evidence_to(&mut self, peer: &PublicKey) {
        for chunk in self.evidence_pool.all().chunks(GOSSIP_BATCH) {
            self.net.send(peer, NetMessage::Evidence(chunk.to_vec()));
        }
    }

    /// Indexes a committed block's evidence and forgets it in the pool.
    pub(super) fn on_evidence_committed(
        &mut self,
        height: Height,
        evidence: &[Evidence],
    ) -> Result<(), StorageError> {
        // Durable enough: the index is rebuilt from the block log at start,
        // before any block is checked against it.
        self.store.index_evidence(height, evidence)?;
        if !evidence.is_empty() {
            for ev in evidence {
                let Evidence::DuplicateVote(d) = ev;
                info!(%height, validator = %d.first.validator, of_height = %d.first.height, "evidence committed");
            }
            self.metrics.evidence_committed.add(evidence.len() as u64);
        }
        self.evidence_pool.on_commit(height, evidence);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStore;
    use crate::types::{Keypair, Round, Timestamp, Vote, VoteType};

    fn keys() -> Vec<Keypair> {
        (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect()
    }

    fn set() -> ValidatorSet {
        ValidatorSet::equal_power(&keys())
    }

    fn vote(k: &Keypair, t: VoteType, h: u64, r: u32, id: &[u8]) -> Vote {
        Vote::new_signed(
            k,
            "c",
            t,
            Height(h),
            Round(r),
            Some(Hash::digest(id)),
            Timestamp(0),
        )
    }

    fn pair(i: usize, h: u64) -> DuplicateVote {
        let k = &keys()[i];
        DuplicateVote::new(
            vote(k, VoteType::Prevote, h, 0, b"a"),
            vote(k, VoteType::Prevote, h, 0, b"b"),
        )
        .unwrap()
    }

    #[test]
    fn verify_refuses_what_is_not_an_equivocation() {
        let store = MemStore::new();
        let ks = keys();
        let check = |d: DuplicateVote| {
            check_evidence(&Evidence::DuplicateVote(d), "c", &set(), Height(10), &store)
        };
        assert!(check(pair(0, 5)).is_ok());
        // Two signers.
        let two = DuplicateVote {
            first: vote(&ks[0], VoteType::Prevote, 5, 0, b"a"),
            second: vote(&ks[1], VoteType::Prevote, 5, 0, b"b"),
        };
        let two = if two.first.block_id < two.second.block_id {
            two
        } else {
            DuplicateVote {
                first: two.second,
                second: two.first,
            }
        };
        assert!(check(two).unwrap_err().is_misbehaviour());
        // Another round, another type, another height.
        for (t, h, r) in [
            (VoteType::Prevote, 5, 1),
            (VoteType::Precommit, 5, 0),
            (VoteType::Prevote, 4, 0),
        ] {
            let a = vote(&ks[0], VoteType::Prevote, 5, 0, b"a");
            let b = vote(&ks[0], t, h, r, b"b");
            let d = DuplicateVote {
                first: a,
                second: b,
            };
            assert!(check(d).unwrap_err().is_misbehaviour(), "{t:?} {h} {r}");
        }
        // The same block id twice.
        let a = vote(&ks[0], VoteType::Prevote, 5, 0, b"a");
        let d = DuplicateVote {
            first: a.clone(),
            second: a,
        };
        assert!(check(d).unwrap_err().is_misbehaviour());
        // Not a validator.
        let outsider = Keypair::from_seed([9; 32]);
        let d = DuplicateVote::new(
            vote(&outsider, VoteType::Prevote, 5, 0, b"a"),
            vote(&outsider, VoteType::Prevote, 5, 0, b"b"),
        )
        .unwrap();
        assert!(check(d).unwrap_err().is_misbehaviour());
        // A forged signature.
        let mut d = pair(0, 5);
        d.second.signature = d.first.signature;
        assert!(check(d).unwrap_err().is_misbehaviour());
        // Another chain.
        let d = DuplicateVote::new(
            Vote::new_signed(
                &ks[0],
                "other",
                VoteType::Prevote,
                Height(5),
                Round(0),
                None,
                Timestamp(0),
            ),
            Vote::new_signed(
                &ks[0],
                "other",
                VoteType::Prevote,
                Height(5),
                Round(0),
                Some(Hash::ZERO),
                Timestamp(0),
            ),
        )
        .unwrap();
        assert!(check(d).unwrap_err().is_misbehaviour());
    }

    #[test]
    fn height_window() {
        let store = MemStore::new();
        let ev = Evidence::DuplicateVote(pair(0, 5));
        let at = |h: u64| check_evidence(&ev, "c", &set(), Height(h), &store);
        assert!(matches!(at(5), Err(EvidenceError::NotBelow { .. })));
        assert!(at(6).is_ok());
        assert!(at(5 + EVIDENCE_MAX_AGE).is_ok());
        assert!(matches!(
            at(6 + EVIDENCE_MAX_AGE),
            Err(EvidenceError::TooOld { .. })
        ));
        assert!(!at(5).unwrap_err().is_misbehaviour());
    }

    #[test]
    fn committed_evidence_is_refused_and_leaves_the_pool() {
        let store = MemStore::new();
        let d = pair(1, 3);
        let ev = Evidence::DuplicateVote(d.clone());
        let mut pool = EvidencePool::default();
        assert!(pool.insert(d.clone()));
        assert!(!pool.insert(d.clone()), "pooled twice");
        assert_eq!(pool.for_block(Height(3)), vec![]);
        assert_eq!(pool.for_block(Height(4)), vec![ev.clone()]);
        check_evidence(&ev, "c", &set(), Height(4), &store).unwrap();

        store
            .index_evidence(Height(4), std::slice::from_ref(&ev))
            .unwrap();
        pool.on_commit(Height(4), std::slice::from_ref(&ev));
        assert!(pool.is_empty());
        // Exactly once: a later block may not carry it again.
        match check_evidence(&ev, "c", &set(), Height(5), &store) {
            Err(EvidenceError::Committed(h)) => assert_eq!(h, Height(4)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_piece_of_evidence_per_equivocated_slot() {
        let k = &keys()[2];
        let v = |id: &[u8]| vote(k, VoteType::Precommit, 7, 1, id);
        // Three conflicting votes in one slot make three valid pairs.
        let pairs = [
            DuplicateVote::new(v(b"a"), v(b"b")).unwrap(),
            DuplicateVote::new(v(b"a"), v(b"c")).unwrap(),
            DuplicateVote::new(v(b"b"), v(b"c")).unwrap(),
        ];
        let mut pool = EvidencePool::default();
        assert!(pool.insert(pairs[0].clone()));
        assert!(!pool.insert(pairs[1].clone()), "a second pair of one slot");
        assert!(!pool.insert(pairs[2].clone()), "a third pair of one slot");
        assert_eq!(pool.len(), 1);
        // Another slot of the same validator (another round) is another fault.
        let other = DuplicateVote::new(
            vote(k, VoteType::Precommit, 7, 2, b"a"),
            vote(k, VoteType::Precommit, 7, 2, b"b"),
        )
        .unwrap();
        assert!(pool.insert(other.clone()));
        // Once a block commits the slot, no other pair of it comes back.
        pool.on_commit(Height(8), &[Evidence::DuplicateVote(pairs[0].clone())]);
        assert_eq!(pool.len(), 1);
        assert!(!pool.insert(pairs[1].clone()), "a committed slot again");
        assert_eq!(
            pool.for_block(Height(9)),
            vec![Evidence::DuplicateVote(other)]
        );
    }

    #[test]
    fn pool_is_bounded_and_forgets_old_evidence() {
        let mut pool = EvidencePool::default();
        let k = &keys()[0];
        for i in 0..MAX_POOL as u64 + 10 {
            let d = DuplicateVote::new(
                vote(k, VoteType::Prevote, 1 + i, 0, b"a"),
                vote(k, VoteType::Prevote, 1 + i, 0, b"b"),
            )
            .unwrap();
            pool.insert(d);
        }
        assert_eq!(pool.len(), MAX_POOL);
        assert_eq!(pool.for_block(Height(10_000)).len(), MAX_BLOCK_EVIDENCE);
        pool.on_commit(Height(EVIDENCE_MAX_AGE + 11), &[]);
        // Heights 1..=11 aged out.
        assert_eq!(pool.len(), MAX_POOL - 11);
    }
}
