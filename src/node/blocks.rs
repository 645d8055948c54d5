//! Building proposals and checking proposed or fetched blocks against the chain
//! as this node stores it. The same rules serve the proposer, the validators
//! deciding whether to prevote, and nodes catching up.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::Store;
use super::evidence::{MAX_BLOCK_EVIDENCE, check_evidence};
use crate::app::{Application, Execution};
use crate::types::{
    Block, BlockId, Commit, Evidence, Hash, Header, Height, PublicKey, Timestamp, ValidatorSet,
};

/// Why a block is not acceptable at a height.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid block at height {height}: {reason}")]
pub struct InvalidBlock {
    /// The height checked.
    pub height: Height,
    /// What is wrong.
    pub reason: String,
}

/// What a block at some height inherits from its parent.
struct Parent {
    id: Option<BlockId>,
    commit: Option<Commit>,
}

/// The rules of a valid block, and the state they are checked against.
#[derive(Clone)]
pub struct BlockRules {
    chain_id: String,
    set: Arc<ValidatorSet>,
    validators_hash: Hash,
    genesis_time: Timestamp,
    max_block_bytes: usize,
    max_block_txs: usize,
    store: Arc<dyn Store>,
    app: Arc<dyn Application>,
}

impl BlockRules {
    /// Rules for a chain.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        chain_id: String,
        set: Arc<ValidatorSet>,
        genesis_time: Timestamp,
        max_block_bytes: usize,
        max_block_txs: usize,
        store: Arc<dyn Store>,
        app: Arc<dyn Application>,
    ) -> BlockRules {
        BlockRules {
            chain_id,
            validators_hash: set.hash(),
            set,
            genesis_time,
            max_block_bytes,
            max_block_txs,
            store,
            app,
        }
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.set
    }

    /// Largest transaction bytes per block.
    pub fn max_block_bytes(&self) -> usize {
        self.max_block_bytes
    }

    /// Most transactions per block.
    pub fn max_block_txs(&self) -> usize {
        self.max_block_txs
    }

    fn invalid(height: Height, reason: impl Into<String>) -> InvalidBlock {
        InvalidBlock {
            height,
            reason: reason.into(),
        }
    }

    fn parent(&self, height: Height) -> Result<Parent, InvalidBlock> {
        let Some(prev) = height.prev() else {
            return Ok(Parent {
                id: None,
                commit: None,
            });
        };
        let err = |e: crate::storage::StorageError| {
            Self::invalid(height, format!("reading height {prev}: {e}"))
        };
        let id =
            self.store.block_id(prev).map_err(err)?.ok_or_else(|| {
                Self::invalid(height, format!("previous block {prev} is not stored"))
            })?;
        let commit = self
            .store
            .commit(prev)
            .map_err(err)?
            .ok_or_else(|| Self::invalid(height, format!("commit of {prev} is not stored")))?;
        Ok(Parent {
            id: Some(id),
            commit: Some(commit),
        })
    }

    /// The block time that follows from a previous commit.
    fn time_after(&self, last_commit: Option<&Commit>) -> Timestamp {
        match last_commit {
            Some(c) => c.median_time(&self.set),
            None => self.genesis_time,
        }
    }

    /// Builds the block we propose at `height`: the candidate transactions (from
    /// the mempool) that still pass, executed on the committed state.
    pub fn build(
        &self,
        height: Height,
        proposer: PublicKey,
        txs: Vec<Bytes>,
        evidence: Vec<Evidence>,
    ) -> Result<(Block, Execution), InvalidBlock> {
        let parent = self.parent(height)?;
        // The pool forgets committed evidence; checking again costs little and
        // keeps our own proposal valid whatever the pool holds.
        let evidence: Vec<Evidence> = evidence
            .into_iter()
            .filter(|ev| {
                check_evidence(ev, &self.chain_id, &self.set, height, self.store.as_ref()).is_ok()
            })
            .take(MAX_BLOCK_EVIDENCE)
            .collect();
        // Transactions that no longer pass are left out rather than failing the
        // proposal.
        let (txs, exec) = self
            .app
            .prepare(height, txs)
            .map_err(|e| Self::invalid(height, e.to_string()))?;
        let header = Header {
            chain_id: self.chain_id.clone(),
            height,
            time: self.time_after(parent.commit.as_ref()),
            last_block_id: parent.id,
            last_commit_hash: parent.commit.as_ref().map_or(Hash::ZERO, |c| c.hash()),
            data_hash: Block::data_hash_of(&txs),
            app_hash: exec.app_hash,
            validators_hash: self.validators_hash,
            evidence_hash: Block::evidence_hash_of(&evidence),
            proposer,
        };
        Ok((
            Block {
                header,
                txs,
                last_commit: parent.commit,
                evidence,
            },
            exec,
        ))
    }

    /// Checks a block for `height` against the stored chain and executes it.
    /// Deterministic: every honest node reaches the same verdict.
    pub fn validate(&self, height: Height, block: &Block) -> Result<Execution, InvalidBlock> {
        self.validate_with(height, block, true)
    }

    /// [`BlockRules::validate`] for a block that arrives with a verified commit
    /// (catching up, or decided here): the signatures of its last commit are
    /// not checked again, only its height, block, signers and power. Validators
    /// holding more than 2/3 of the power precommitted this block, so at least
    /// one honest one checked those signatures before it did; checking them
    /// again would double the signature work of block sync for no safety
    /// gained. Its transactions are executed with
    /// [`Application::execute_certified`]: a certified block is never refused
    /// for what its transactions say. What can still fail here is a rule the
    /// network applied differently than this node (its state, its time, its
    /// evidence): the caller must treat that as this node's divergence, not
    /// as a fault of whoever sent the block.
    pub fn validate_certified(
        &self,
        height: Height,
        block: &Block,
    ) -> Result<Execution, InvalidBlock> {
        self.validate_with(height, block, false)
    }

    fn validate_with(
        &self,
        height: Height,
        block: &Block,
        proposed: bool,
    ) -> Result<Execution, InvalidBlock> {
        let h = &block.header;
        if h.height != height {
            return Err(Self::invalid(
                height,
                format!("block is for height {}", h.height),
            ));
        }
        block
            .check_structure(&self.chain_id)
            .map_err(|e| Self::invalid(height, e.to_string()))?;
        if block.txs.len() > self.max_block_txs {
            return Err(Self::invalid(
                height,
                format!(
                    "{} transactions, at most {}",
                    block.txs.len(),
                    self.max_block_txs
                ),
            ));
        }
        if block.tx_bytes() > self.max_block_bytes {
            return Err(Self::invalid(
                height,
                format!(
                    "{} transaction bytes, at most {}",
                    block.tx_bytes(),
                    self.max_block_bytes
                ),
            ));
        }
        if h.validators_hash != self.validators_hash {
            return Err(Self::invalid(
                height,
                "validators hash is not the genesis set's",
            ));
        }
        if self.set.get(&h.proposer).is_none() {
            return Err(Self::invalid(height, "proposer is not a validator"));
        }
        let parent = self.parent(height)?;
        if h.last_block_id != parent.id {
            return Err(Self::invalid(
                height,
                "previous block id does not match the stored chain",
            ));
        }
        // The carried commit may hold other precommits than ours; it must certify
        // the stored previous block.
        if let (Some(c), Some(prev_id), Some(prev)) = (&block.last_commit, parent.id, height.prev())
        {
            let checked = if proposed {
                c.verify(&self.chain_id, &self.set, prev, &prev_id)
            } else {
                c.check_certifies(&self.set, prev, &prev_id)
            };
            checked.map_err(|e| Self::invalid(height, format!("last commit: {e}")))?;
        }
        let time = self.time_after(block.last_commit.as_ref());
        if h.time != time {
            return Err(Self::invalid(
                height,
                format!(
                    "time {} is not the median of the last commit ({time})",
                    h.time
                ),
            ));
        }
        if block.evidence.len() > MAX_BLOCK_EVIDENCE {
            return Err(Self::invalid(
                height,
                format!(
                    "{} pieces of evidence, at most {MAX_BLOCK_EVIDENCE}",
                    block.evidence.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for ev in &block.evidence {
            if !seen.insert(ev.hash()) {
                return Err(Self::invalid(height, "evidence listed twice"));
            }
            // Valid, recent, and committed by no earlier block: exactly once.
            check_evidence(ev, &self.chain_id, &self.set, height, self.store.as_ref())
                .map_err(|e| Self::invalid(height, format!("evidence: {e}")))?;
        }
        let exec = if proposed {
            self.app.execute(height, &block.txs)
        } else {
            self.app.execute_certified(height, &block.txs)
        }
        .map_err(|e| Self::invalid(height, e.to_string()))?;
        if exec.app_hash != h.app_hash {
            return Err(Self::invalid(
                height,
                format!(
                    "state root {} differs from executed {}",
                    h.app_hash, exec.app_hash
                ),
            ));
        }
        Ok(exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ledger::Ledger;
    use crate::storage::{BlockStore, EvidenceStore, MemStore};
    use crate::types::{DuplicateVote, Keypair, Round, Vote, VoteType};

    const CHAIN: &str = "c";

    fn keys() -> Vec<Keypair> {
        (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect()
    }

    /// Rules over a fresh store and ledger, and the store.
    fn rules() -> (BlockRules, MemStore) {
        let set = ValidatorSet::equal_power(&keys());
        let store = MemStore::new();
        let app = Ledger::open(CHAIN, store.state_backend(), &[]).unwrap();
        let rules = BlockRules::new(
            CHAIN.into(),
            Arc::new(set),
            Timestamp(1_000),
            1 << 20,
            1000,
            Arc::new(store.clone()),
            Arc::new(app),
        );
        (rules, store)
    }

    /// Builds, checks and commits the block at `height` with `evidence`, as a
    /// node does, indexing its evidence.
    fn commit_next(rules: &BlockRules, store: &MemStore, height: u64, evidence: Vec<Evidence>) {
        let h = Height(height);
        let (block, exec) = rules
            .build(h, keys()[0].public(), vec![], evidence.clone())
            .unwrap();
        assert_eq!(block.evidence, evidence, "build dropped evidence");
        rules.validate(h, &block).unwrap();
        let id = block.id();
        let votes: Vec<Vote> = keys()
            .iter()
            .map(|k| {
                Vote::new_signed(
                    k,
                    CHAIN,
                    VoteType::Precommit,
                    h,
                    Round(0),
                    Some(id),
                    Timestamp(2_000 + height),
                )
            })
            .collect();
        let commit = Commit::from_precommits(h, Round(0), id, &votes);
        store.append(&block, &commit, &[]).unwrap();
        rules.app.commit(&exec).unwrap();
        store.index_evidence(h, &block.evidence).unwrap();
    }

    fn equivocation(height: u64) -> Evidence {
        let k = &keys()[3];
        let v = |id: &[u8]| {
            Vote::new_signed(
                k,
                CHAIN,
                VoteType::Prevote,
                Height(height),
                Round(0),
                Some(Hash::digest(id)),
                Timestamp(0),
            )
        };
        Evidence::DuplicateVote(DuplicateVote::new(v(b"a"), v(b"b")).unwrap())
    }

    #[test]
    fn a_block_may_carry_evidence_only_once() {
        let (rules, store) = rules();
        commit_next(&rules, &store, 1, vec![]);
        let ev = equivocation(1);
        commit_next(&rules, &store, 2, vec![ev.clone()]);

        // A proposer that offers it again leaves it out of its block...
        let (block, _) = rules
            .build(Height(3), keys()[0].public(), vec![], vec![ev.clone()])
            .unwrap();
        assert!(block.evidence.is_empty());
        // ...and a block that repeats it is invalid (its validators prevote nil).
        let mut repeat = block.clone();
        repeat.evidence = vec![ev.clone()];
        repeat.header.evidence_hash = Block::evidence_hash_of(&repeat.evidence);
        let err = rules.validate(Height(3), &repeat).unwrap_err();
        assert!(err.reason.contains("already committed"), "{err}");
        // The same block without it is fine.
        rules.validate(Height(3), &block).unwrap();

        // Listed twice in one block, or with a forged signature: invalid too.
        let fresh = equivocation(2);
        let mut twice = block.clone();
        twice.evidence = vec![fresh.clone(), fresh.clone()];
        twice.header.evidence_hash = Block::evidence_hash_of(&twice.evidence);
        assert!(rules.validate(Height(3), &twice).is_err());
        let Evidence::DuplicateVote(mut forged) = fresh;
        forged.second.signature = forged.first.signature;
        let mut bad = block;
        bad.evidence = vec![Evidence::DuplicateVote(forged)];
        bad.header.evidence_hash = Block::evidence_hash_of(&bad.evidence);
        assert!(rules.validate(Height(3), &bad).is_err());
    }
}
