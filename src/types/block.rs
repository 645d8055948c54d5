//! Block headers and blocks.

use bytes::Bytes;

use super::{
    BlockId, Canonical, Commit, Evidence, Hash, Height, PublicKey, Timestamp, TypesError, merkle,
};

/// A block header. Its hash is the block id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The chain this block belongs to.
    pub chain_id: String,
    /// Height of this block.
    pub height: Height,
    /// Block time: the weighted median of the precommit times in `last_commit`
    /// (genesis time at height 1).
    pub time: Timestamp,
    /// Id of the previous block; `None` at height 1.
    pub last_block_id: Option<BlockId>,
    /// Hash of `last_commit` ([`Hash::ZERO`] at height 1).
    pub last_commit_hash: Hash,
    /// Merkle root of the transactions.
    pub data_hash: Hash,
    /// State root after executing this block.
    pub app_hash: Hash,
    /// Hash of the validator set.
    pub validators_hash: Hash,
    /// Hash of the evidence list.
    pub evidence_hash: Hash,
    /// Who proposed this block.
    pub proposer: PublicKey,
}

impl Header {
    /// The block id: SHA-256 of the canonical header bytes.
    pub fn id(&self) -> BlockId {
        let mut c = Canonical::tagged("consort/header/v1");
        c.str(&self.chain_id)
            .height(self.height)
            .time(self.time)
            .opt_hash(self.last_block_id.as_ref())
            .hash(&self.last_commit_hash)
            .hash(&self.data_hash)
            .hash(&self.app_hash)
            .hash(&self.validators_hash)
            .hash(&self.evidence_hash)
            .bytes(self.proposer.as_bytes());
        c.digest()
    }
}

/// A block: header, transactions, the commit of the previous block, evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// Transactions, opaque to consensus.
    pub txs: Vec<Bytes>,
    /// Commit certificate of the previous block; `None` at height 1.
    pub last_commit: Option<Commit>,
    /// Evidence of misbehaviour included in this block.
    pub evidence: Vec<Evidence>,
}

impl Block {
    /// The block id (the header's hash).
    pub fn id(&self) -> BlockId {
        self.header.id()
    }

    /// Height of the block.
    pub fn height(&self) -> Height {
        self.header.height
    }

    /// Merkle root over transactions.
    pub fn data_hash_of(txs: &[Bytes]) -> Hash {
        merkle::root(txs)
    }

    /// Hash over an evidence list.
    pub fn evidence_hash_of(evidence: &[Evidence]) -> Hash {
        let hashes: Vec<Hash> = evidence.iter().map(|e| e.hash()).collect();
        merkle::root_of_leaf_hashes(&hashes)
    }

    /// Checks what a block says of itself: the chain, and that the header's hashes
    /// match the transactions, previous commit and evidence it carries. Signatures
    /// and state are checked elsewhere.
    pub fn check_structure(&self, chain_id: &str) -> Result<(), TypesError> {
        let h = &self.header;
        if h.chain_id != chain_id {
            return Err(TypesError::InvalidBlock(format!(
                "chain id {:?}, expected {chain_id:?}",
                h.chain_id
            )));
        }
        if h.height.0 == 0 {
            return Err(TypesError::InvalidBlock("height 0".into()));
        }
        self.check_body()
    }

    /// Checks that the body (transactions, evidence, last commit) is the one
    /// the header commits to. A block whose header is certified and whose body
    /// fails this was altered by whoever sent it; every node judges it alike.
    pub fn check_body(&self) -> Result<(), TypesError> {
        let h = &self.header;
        if Block::data_hash_of(&self.txs) != h.data_hash {
            return Err(TypesError::InvalidBlock(
                "data hash does not match the transactions".into(),
            ));
        }
        if Block::evidence_hash_of(&self.evidence) != h.evidence_hash {
            return Err(TypesError::InvalidBlock(
                "evidence hash does not match the evidence".into(),
            ));
        }
        match (&self.last_commit, h.last_block_id) {
            (None, None) if h.height == Height::GENESIS => {
                if h.last_commit_hash != Hash::ZERO {
                    return Err(TypesError::InvalidBlock(
                        "first block has a last commit hash".into(),
                    ));
                }
            }
            (Some(c), Some(prev)) if h.height > Height::GENESIS => {
                if c.height.next() != h.height {
                    return Err(TypesError::InvalidBlock(format!(
                        "last commit is for height {}, block is at {}",
                        c.height, h.height
                    )));
                }
                if c.block_id != prev {
                    return Err(TypesError::InvalidBlock(
                        "last commit is not for the previous block".into(),
                    ));
                }
                if c.hash() != h.last_commit_hash {
                    return Err(TypesError::InvalidBlock(
                        "last commit hash does not match the last commit".into(),
                    ));
                }
            }
            _ => {
                return Err(TypesError::InvalidBlock(
                    "the previous block id and commit must be present exactly above height 1"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Total size of the transactions in bytes.
    pub fn tx_bytes(&self) -> usize {
        self.txs.iter().map(|t| t.len()).sum()
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use crate::types::Keypair;

    fn genesis_block() -> Block {
        let txs = vec![Bytes::from_static(b"tx1"), Bytes::from_static(b"tx2")];
        Block {
            header: Header {
                chain_id: "c".into(),
                height: Height(1),
                time: Timestamp(1),
                last_block_id: None,
                last_commit_hash: Hash::ZERO,
                data_hash: Block::data_hash_of(&txs),
                app_hash: Hash::ZERO,
                validators_hash: Hash::ZERO,
                evidence_hash: Block::evidence_hash_of(&[]),
                proposer: Keypair::from_seed([1; 32]).public(),
            },
            txs,
            last_commit: None,
            evidence: vec![],
        }
    }

    #[test]
    fn id_covers_every_header_field() {
        let b = genesis_block();
        let id = b.id();
        let mutations: Vec<Box<dyn Fn(&mut Header)>> = vec![
            Box::new(|h| h.chain_id.push('x')),
            Box::new(|h| h.height = Height(2)),
            Box::new(|h| h.time = Timestamp(2)),
            Box::new(|h| h.last_block_id = Some(Hash::ZERO)),
            Box::new(|h| h.last_commit_hash = Hash::digest(b"x")),
            Box::new(|h| h.data_hash = Hash::ZERO),
            Box::new(|h| h.app_hash = Hash::digest(b"x")),
            Box::new(|h| h.validators_hash = Hash::digest(b"x")),
            Box::new(|h| h.evidence_hash = Hash::ZERO),
            Box::new(|h| h.proposer = Keypair::from_seed([2; 32]).public()),
        ];
        for m in mutations {
            let mut h = b.header.clone();
            m(&mut h);
            assert_ne!(h.id(), id, "{h:?}");
        }
    }

    #[test]
    fn structure_checks() {
        let b = genesis_block();
        assert!(b.check_structure("c").is_ok());
        assert!(b.check_structure("d").is_err());
        let mut t = b.clone();
        t.txs.push(Bytes::from_static(b"extra"));
        assert!(t.check_structure("c").is_err());
        let mut t = b.clone();
        t.header.last_block_id = Some(Hash::ZERO);
        assert!(t.check_structure("c").is_err());
        let mut t = b;
        t.header.height = Height(2);
        assert!(t.check_structure("c").is_err());
    }
}
