//! Fixtures shared by the fuzz targets: a fixed chain id, four validator keys,
//! blocks and commits signed by them. Everything is deterministic, so a crash
//! replays from its input file alone.

use std::sync::Arc;

use consort::types::{
    Block, BlockId, Commit, Hash, Header, Height, Keypair, Round, Timestamp, Validator,
    ValidatorSet, Vote, VoteType,
};

/// Chain id of every fixture.
pub const CHAIN: &str = "consort-fuzz";

/// Number of validators of the fixture set.
pub const VALIDATORS: usize = 4;

/// The validator keys, in a fixed order (not the set's order).
pub fn keys() -> Vec<Keypair> {
    (0..VALIDATORS)
        .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
        .collect()
}

/// The fixture validator set: the four keys with power 1 each.
pub fn validator_set() -> ValidatorSet {
    ValidatorSet::new(
        keys()
            .iter()
            .enumerate()
            .map(|(i, k)| Validator {
                public_key: k.public(),
                power: 1,
                name: format!("v{i}"),
            })
            .collect(),
    )
    .expect("fixture validator set")
}

/// A structurally plain block at `height`; `tag` makes distinct blocks.
pub fn block(height: u64, tag: u8) -> Arc<Block> {
    Arc::new(Block {
        header: Header {
            chain_id: CHAIN.into(),
            height: Height(height),
            time: Timestamp(height),
            last_block_id: None,
            last_commit_hash: Hash::ZERO,
            data_hash: Hash::digest(&[tag]),
            app_hash: Hash::ZERO,
            validators_hash: Hash::ZERO,
            evidence_hash: Hash::ZERO,
            proposer: keys()[0].public(),
        },
        txs: Vec::new(),
        last_commit: None,
        evidence: Vec::new(),
    })
}

/// A commit for `id` at (height, round) signed by the keys whose bit is set in
/// `signers`.
pub fn commit(height: Height, round: Round, id: BlockId, signers: u8) -> Commit {
    let votes: Vec<Vote> = keys()
        .iter()
        .enumerate()
        .filter(|(i, _)| signers & (1 << i) != 0)
        .map(|(_, k)| {
            Vote::new_signed(
                k,
                CHAIN,
                VoteType::Precommit,
                height,
                round,
                Some(id),
                Timestamp(height.0),
            )
        })
        .collect();
    Commit::from_precommits(height, round, id, &votes)
}

/// Reads bytes off the front of a fuzz input; zero once it is used up, so a
/// short input still drives every decision.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Whether anything is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A header of the fixture chain naming `set`, certified by all four keys, as
/// a client's verifier accepts it (made once: signing costs more than a run).
pub fn verified_header(set: &ValidatorSet) -> Option<consort::client::verify::VerifiedHeader> {
    static HEADER: std::sync::OnceLock<Option<consort::client::verify::VerifiedHeader>> =
        std::sync::OnceLock::new();
    HEADER
        .get_or_init(|| {
            let mut header = block(1, 0).header.clone();
            header.validators_hash = set.hash();
            let c = commit(Height(1), Round(0), header.id(), 0b1111);
            consort::client::verify::Verifier::from_genesis(CHAIN, set.clone())
                .verify_light_block(header, &c)
                .ok()
        })
        .clone()
}
