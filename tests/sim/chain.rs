//! The application side of the simulated runtime: the blocks a node proposes
//! and the validity predicate every node applies to proposed blocks.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use consort::types::{
    Block, BlockId, Commit, Hash, Header, Height, Keypair, Timestamp, ValidatorSet,
};

use super::rng::Rng;

/// Chain id of every run.
pub const CHAIN_ID: &str = "consort-sim";
/// Genesis time: the time of "block 0", which block 1 carries.
pub const GENESIS_TIME: Timestamp = Timestamp(1_700_000_000_000);
/// The transaction that makes a block invalid.
pub const INVALID_TX: &[u8] = b"INVALID";

/// A decided block with the commit the node holds for it.
#[derive(Clone, Debug)]
pub struct Decided {
    /// The block.
    pub block: Arc<Block>,
    /// Its commit certificate.
    pub commit: Commit,
}

/// The validator set with the results of pure checks cached: verifying a
/// signature or a commit is a function of its bytes, so one verification per
/// distinct message and run is the same as one per node.
pub struct Verifier {
    /// The validators.
    pub set: ValidatorSet,
    set_hash: Hash,
    signatures: HashMap<Hash, bool>,
    commits: HashMap<(Hash, Height, BlockId), bool>,
    /// Signature checks actually computed.
    pub computed: u64,
}

impl Verifier {
    /// A verifier for `set`.
    pub fn new(set: ValidatorSet) -> Verifier {
        Verifier {
            set_hash: set.hash(),
            set,
            signatures: HashMap::new(),
            commits: HashMap::new(),
            computed: 0,
        }
    }

    /// Whether `sig` of `key` over `msg` verifies (`verify_strict`).
    fn check(
        &mut self,
        key: &consort::types::PublicKey,
        msg: &[u8],
        sig: &consort::types::Signature,
    ) -> bool {
        let id = Hash::digest_parts(&[key.as_bytes(), sig.as_bytes(), msg]);
        if let Some(ok) = self.signatures.get(&id) {
            return *ok;
        }
        self.computed += 1;
        let ok = key.verify(msg, sig).is_ok();
        self.signatures.insert(id, ok);
        ok
    }

    /// Whether a vote's signature verifies.
    pub fn vote(&mut self, v: &consort::types::Vote) -> bool {
        self.check(&v.validator, &v.to_sign_bytes(CHAIN_ID), &v.signature)
    }

    /// Whether a proposal's signature verifies.
    pub fn proposal(&mut self, p: &consort::types::Proposal) -> bool {
        let bytes = consort::types::Proposal::sign_bytes(
            CHAIN_ID,
            p.height,
            p.round,
            p.pol_round,
            &p.block_id,
            p.time,
        );
        self.check(&p.proposer, &bytes, &p.signature)
    }

    /// `Commit::verify`, once per distinct commit.
    pub fn commit(&mut self, c: &Commit, height: Height, block_id: &BlockId) -> bool {
        let key = (c.hash(), height, *block_id);
        if let Some(ok) = self.commits.get(&key) {
            return *ok;
        }
        self.computed += c.signatures.len() as u64;
        let ok = c.verify(CHAIN_ID, &self.set, height, block_id).is_ok();
        self.commits.insert(key, ok);
        ok
    }

    /// The validity predicate: would a correct node accept `block` at `height`,
    /// given the block it decided at `height - 1`? The same answer on every correct
    /// node, since they agree on the previous block.
    pub fn valid_block(&mut self, block: &Block, height: Height, prev: Option<&Decided>) -> bool {
        let h = &block.header;
        if block.check_structure(CHAIN_ID).is_err()
            || h.height != height
            || h.validators_hash != self.set_hash
            || h.app_hash != Hash::ZERO
            || self.set.get(&h.proposer).is_none()
            || block.txs.iter().any(|t| t.as_ref() == INVALID_TX)
        {
            return false;
        }
        match (prev, &block.last_commit) {
            (None, None) => height == Height::GENESIS && h.time == GENESIS_TIME,
            (Some(prev), Some(lc)) => {
                let prev_id = prev.block.id();
                h.last_block_id == Some(prev_id)
                    && self.commit(lc, prev.block.height(), &prev_id)
                    && h.time == lc.median_time(&self.set)
                    && h.time > prev.block.header.time
            }
            _ => false,
        }
    }

    /// A valid block for `height` on top of `prev`, proposed by `proposer`, with a
    /// few random transactions.
    pub fn build_block(
        &self,
        rng: &mut Rng,
        height: Height,
        prev: Option<&Decided>,
        proposer: &Keypair,
    ) -> Block {
        let txs: Vec<Bytes> = (0..rng.below(4))
            .map(|_| Bytes::copy_from_slice(&rng.bytes32()[..rng.range(1, 32) as usize]))
            .collect();
        let (time, last_block_id, last_commit) = match prev {
            None => (GENESIS_TIME, None, None),
            Some(d) => (
                d.commit.median_time(&self.set),
                Some(d.block.id()),
                Some(d.commit.clone()),
            ),
        };
        let header = Header {
            chain_id: CHAIN_ID.to_string(),
            height,
            time,
            last_block_id,
            last_commit_hash: last_commit.as_ref().map_or(Hash::ZERO, |c| c.hash()),
            data_hash: Block::data_hash_of(&txs),
            app_hash: Hash::ZERO,
            validators_hash: self.set_hash,
            evidence_hash: Block::evidence_hash_of(&[]),
            proposer: proposer.public(),
        };
        Block {
            header,
            txs,
            last_commit,
            evidence: vec![],
        }
    }

    /// An invalid block for `height` (a Byzantine proposer's): an invalid
    /// transaction, the wrong height, or the wrong previous block.
    pub fn build_invalid_block(
        &self,
        rng: &mut Rng,
        height: Height,
        prev: Option<&Decided>,
        proposer: &Keypair,
    ) -> Block {
        let mut b = self.build_block(rng, height, prev, proposer);
        match rng.below(3) {
            0 => {
                b.txs.push(Bytes::from_static(INVALID_TX));
                b.header.data_hash = Block::data_hash_of(&b.txs);
            }
            1 => b.header.height = height.next(),
            _ => {
                if b.header.last_block_id.is_some() {
                    b.header.last_block_id = Some(Hash(rng.bytes32()));
                } else {
                    b.header.time = b.header.time.plus_millis(1);
                }
            }
        }
        b
    }
}
