//! Conversions between protobuf messages and domain types, with validation.
//!
//! Everything a peer, a client or the disk hands us goes through [`Wire::decode`]
//! (or `from_proto`), which checks lengths, keys and required fields, so that the
//! layers above only ever see valid domain values.

mod results;
mod tx;

use bytes::Bytes;
use prost::Message;

pub use results::{decode_outcome, encode_outcome};
pub use tx::decode_tx;

use crate::pb;
use crate::types::{
    Block, BlockId, Commit, CommitSig, DuplicateVote, Evidence, Hash, Header, Height, Proposal,
    PublicKey, Round, Signature, Timestamp, TypesError, Validator, Vote, VoteType,
};

/// Why bytes or a protobuf message are not a valid domain value.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Not decodable protobuf.
    #[error("malformed protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A required field is absent.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A field holds an invalid value.
    #[error("invalid field {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl CodecError {
    fn invalid(field: &'static str, e: impl std::fmt::Display) -> CodecError {
        CodecError::Invalid {
            field,
            reason: e.to_string(),
        }
    }
}

/// A domain type with a protobuf encoding.
pub trait Wire: Sized {
    /// The protobuf message.
    type Proto: Message + Default;

    /// Converts to protobuf.
    fn to_proto(&self) -> Self::Proto;

    /// Converts from protobuf, validating every field.
    fn from_proto(p: Self::Proto) -> Result<Self, CodecError>;

    /// Protobuf bytes.
    fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// Decodes and validates protobuf bytes.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Self::from_proto(Self::Proto::decode(bytes)?)
    }
}

/// Parses a 32-byte hash field.
pub fn hash_field(field: &'static str, b: &[u8]) -> Result<Hash, CodecError> {
    Hash::from_slice(b).map_err(|e| CodecError::invalid(field, e))
}

/// Parses an optional hash field (empty = none).
pub fn opt_hash_field(field: &'static str, b: &[u8]) -> Result<Option<Hash>, CodecError> {
    if b.is_empty() {
        Ok(None)
    } else {
        hash_field(field, b).map(Some)
    }
}

/// Parses a public key field.
pub fn key_field(field: &'static str, b: &[u8]) -> Result<PublicKey, CodecError> {
    PublicKey::from_bytes(b).map_err(|e| CodecError::invalid(field, e))
}

fn sig_field(field: &'static str, b: &[u8]) -> Result<Signature, CodecError> {
    Signature::from_slice(b).map_err(|e| CodecError::invalid(field, e))
}

fn bytes_of(h: &Hash) -> Bytes {
    Bytes::copy_from_slice(h.as_bytes())
}

fn key_bytes(k: &PublicKey) -> Bytes {
    Bytes::copy_from_slice(k.as_bytes())
}

fn opt_bytes(h: Option<&BlockId>) -> Bytes {
    h.map(bytes_of).unwrap_or_default()
}

impl Wire for Header {
    type Proto = pb::Header;

    fn to_proto(&self) -> pb::Header {
        pb::Header {
            chain_id: self.chain_id.clone(),
            height: self.height.0,
            time_ms: self.time.0,
            last_block_id: opt_bytes(self.last_block_id.as_ref()),
            last_commit_hash: bytes_of(&self.last_commit_hash),
            data_hash: bytes_of(&self.data_hash),
            app_hash: bytes_of(&self.app_hash),
            validators_hash: bytes_of(&self.validators_hash),
            evidence_hash: bytes_of(&self.evidence_hash),
            proposer: key_bytes(&self.proposer),
        }
    }

    fn from_proto(p: pb::Header) -> Result<Header, CodecError> {
        if p.height == 0 {
            return Err(CodecError::invalid("header.height", "must be at least 1"));
        }
        Ok(Header {
            chain_id: p.chain_id,
            height: Height(p.height),
            time: Timestamp(p.time_ms),
            last_block_id: opt_hash_field("header.last_block_id", &p.last_block_id)?,
            last_commit_hash: hash_field("header.last_commit_hash", &p.last_commit_hash)?,
            data_hash: hash_field("header.data_hash", &p.data_hash)?,
            app_hash: hash_field("header.app_hash", &p.app_hash)?,
            validators_hash: hash_field("header.validators_hash", &p.validators_hash)?,
            evidence_hash: hash_field("header.evidence_hash", &p.evidence_hash)?,
            proposer: key_field("header.proposer", &p.proposer)?,
        })
    }
}

impl Wire for Block {
    type Proto = pb::Block;

    fn to_proto(&self) -> pb::Block {
        pb::Block {
            header: Some(self.header.to_proto()),
            txs: self.txs.clone(),
            last_commit: self.last_commit.as_ref().map(Wire::to_proto),
            evidence: self.evidence.iter().map(Wire::to_proto).collect(),
        }
    }

    fn from_proto(p: pb::Block) -> Result<Block, CodecError> {
        Ok(Block {
            header: Header::from_proto(p.header.ok_or(CodecError::Missing("block.header"))?)?,
            txs: p.txs,
            last_commit: p.last_commit.map(Commit::from_proto).transpose()?,
            evidence: p
                .evidence
                .into_iter()
                .map(Evidence::from_proto)
                .collect::<Result<_, _>>()?,
        })
    }
}

fn vote_type_from(code: i32) -> Result<VoteType, CodecError> {
    match pb::VoteType::try_from(code) {
        Ok(pb::VoteType::Prevote) => Ok(VoteType::Prevote),
        Ok(pb::VoteType::Precommit) => Ok(VoteType::Precommit),
        _ => Err(CodecError::invalid(
            "vote.type",
            format!("unknown vote type {code}"),
        )),
    }
}

impl Wire for Vote {
    type Proto = pb::Vote;

    fn to_proto(&self) -> pb::Vote {
        let t = match self.vote_type {
            VoteType::Prevote => pb::VoteType::Prevote,
            VoteType::Precommit => pb::VoteType::Precommit,
        };
        pb::Vote {
            r#type: t as i32,
            height: self.height.0,
            round: self.round.0,
            block_id: opt_bytes(self.block_id.as_ref()),
            time_ms: self.time.0,
            validator: key_bytes(&self.validator),
            signature: Bytes::copy_from_slice(self.signature.as_bytes()),
        }
    }

    fn from_proto(p: pb::Vote) -> Result<Vote, CodecError> {
        if p.height == 0 {
            return Err(CodecError::invalid("vote.height", "must be at least 1"));
        }
        Ok(Vote {
            vote_type: vote_type_from(p.r#type)?,
            height: Height(p.height),
            round: Round(p.round),
            block_id: opt_hash_field("vote.block_id", &p.block_id)?,
            time: Timestamp(p.time_ms),
            validator: key_field("vote.validator", &p.validator)?,
            signature: sig_field("vote.signature", &p.signature)?,
        })
    }
}

impl Wire for Proposal {
    type Proto = pb::Proposal;

    fn to_proto(&self) -> pb::Proposal {
        pb::Proposal {
            height: self.height.0,
            round: self.round.0,
            pol_round: self.pol_round.map(|r| r.0),
            block_id: bytes_of(&self.block_id),
            time_ms: self.time.0,
            proposer: key_bytes(&self.proposer),
            signature: Bytes::copy_from_slice(self.signature.as_bytes()),
        }
    }

    fn from_proto(p: pb::Proposal) -> Result<Proposal, CodecError> {
        if p.height == 0 {
            return Err(CodecError::invalid("proposal.height", "must be at least 1"));
        }
        if p.pol_round.is_some_and(|vr| vr >= p.round) {
            return Err(CodecError::invalid(
                "proposal.pol_round",
                "must be below the proposal's round",
            ));
        }
        Ok(Proposal {
            height: Height(p.height),
            round: Round(p.round),
            pol_round: p.pol_round.map(Round),
            block_id: hash_field("proposal.block_id", &p.block_id)?,
            time: Timestamp(p.time_ms),
            proposer: key_field("proposal.proposer", &p.proposer)?,
            signature: sig_field("proposal.signature", &p.signature)?,
        })
    }
}

impl Wire for Commit {
    type Proto = pb::Commit;

    fn to_proto(&self) -> pb::Commit {
        pb::Commit {
            height: self.height.0,
            round: self.round.0,
            block_id: bytes_of(&self.block_id),
            signatures: self
                .signatures
                .iter()
                .map(|s| pb::CommitSig {
                    validator: key_bytes(&s.validator),
                    time_ms: s.time.0,
                    signature: Bytes::copy_from_slice(s.signature.as_bytes()),
                })
                .collect(),
        }
    }

    fn from_proto(p: pb::Commit) -> Result<Commit, CodecError> {
        if p.height == 0 {
            return Err(CodecError::invalid("commit.height", "must be at least 1"));
        }
        Ok(Commit {
            height: Height(p.height),
            round: Round(p.round),
            block_id: hash_field("commit.block_id", &p.block_id)?,
            signatures: p
                .signatures
                .into_iter()
                .map(|s| {
                    Ok(CommitSig {
                        validator: key_field("commit.signatures.validator", &s.validator)?,
                        time: Timestamp(s.time_ms),
                        signature: sig_field("commit.signatures.signature", &s.signature)?,
                    })
                })
                .collect::<Result<_, CodecError>>()?,
        })
    }
}

impl Wire for Evidence {
    type Proto = pb::Evidence;

    fn to_proto(&self) -> pb::Evidence {
        match self {
            Evidence::DuplicateVote(d) => pb::Evidence {
                kind: Some(pb::evidence::Kind::DuplicateVote(
                    pb::DuplicateVoteEvidence {
                        first: Some(d.first.to_proto()),
                        second: Some(d.second.to_proto()),
                    },
                )),
            },
        }
    }

    fn from_proto(p: pb::Evidence) -> Result<Evidence, CodecError> {
        match p.kind {
            Some(pb::evidence::Kind::DuplicateVote(d)) => {
                let first =
                    Vote::from_proto(d.first.ok_or(CodecError::Missing("evidence.first"))?)?;
                let second =
                    Vote::from_proto(d.second.ok_or(CodecError::Missing("evidence.second"))?)?;
                let dv = DuplicateVote::new(first, second).ok_or_else(|| {
                    CodecError::invalid("evidence", "votes are not a conflicting pair")
                })?;
                Ok(Evidence::DuplicateVote(dv))
            }
            None => Err(CodecError::Missing("evidence.kind")),
        }
    }
}

impl Wire for Validator {
    type Proto = pb::Validator;

    fn to_proto(&self) -> pb::Validator {
        pb::Validator {
            public_key: key_bytes(&self.public_key),
            power: self.power,
            name: self.name.clone(),
        }
    }

    fn from_proto(p: pb::Validator) -> Result<Validator, CodecError> {
        Ok(Validator {
            public_key: key_field("validator.public_key", &p.public_key)?,
            power: p.power,
            name: p.name,
        })
    }
}

impl From<TypesError> for CodecError {
    fn from(e: TypesError) -> CodecError {
        CodecError::invalid("value", e)
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use crate::types::Keypair;

    fn sample_block() -> Block {
        let k = Keypair::from_seed([1; 32]);
        let prev = Hash::digest(b"prev");
        let votes: Vec<Vote> = (1..=3u8)
            .map(|i| {
                Vote::new_signed(
                    &Keypair::from_seed([i; 32]),
                    "c",
                    VoteType::Precommit,
                    Height(1),
                    Round(0),
                    Some(prev),
                    Timestamp(10),
                )
            })
            .collect();
        let commit = Commit::from_precommits(Height(1), Round(0), prev, &votes);
        let a = Vote::new_signed(
            &k,
            "c",
            VoteType::Prevote,
            Height(1),
            Round(0),
            None,
            Timestamp(1),
        );
        let b = Vote::new_signed(
            &k,
            "c",
            VoteType::Prevote,
            Height(1),
            Round(0),
            Some(prev),
            Timestamp(1),
        );
        let evidence = vec![Evidence::DuplicateVote(DuplicateVote::new(a, b).unwrap())];
        let txs = vec![Bytes::from_static(b"t1")];
        Block {
            header: Header {
                chain_id: "c".into(),
                height: Height(2),
                time: Timestamp(11),
                last_block_id: Some(prev),
                last_commit_hash: commit.hash(),
                data_hash: Block::data_hash_of(&txs),
                app_hash: Hash::digest(b"app"),
                validators_hash: Hash::digest(b"vals"),
                evidence_hash: Block::evidence_hash_of(&evidence),
                proposer: k.public(),
            },
            txs,
            last_commit: Some(commit),
            evidence,
        }
    }

    #[test]
    fn block_round_trips() {
        let b = sample_block();
        let decoded = Block::decode(&b.encode()).unwrap();
        assert_eq!(decoded, b);
        assert_eq!(decoded.id(), b.id());
        assert!(decoded.check_structure("c").is_ok());
    }

    #[test]
    fn proposal_and_vote_round_trip() {
        let k = Keypair::from_seed([4; 32]);
        let p = Proposal::new_signed(
            &k,
            "c",
            Height(3),
            Round(2),
            Some(Round(1)),
            Hash::digest(b"x"),
            Timestamp(5),
        );
        assert_eq!(Proposal::decode(&p.encode()).unwrap(), p);
        let v = Vote::new_signed(
            &k,
            "c",
            VoteType::Precommit,
            Height(3),
            Round(2),
            None,
            Timestamp(5),
        );
        assert_eq!(Vote::decode(&v.encode()).unwrap(), v);
    }

    #[test]
    fn rejects_invalid_fields() {
        let k = Keypair::from_seed([4; 32]);
        let v = Vote::new_signed(
            &k,
            "c",
            VoteType::Precommit,
            Height(3),
            Round(2),
            None,
            Timestamp(5),
        );
        let cases: Vec<(&str, Box<dyn Fn(&mut pb::Vote)>)> = vec![
            (
                "short key",
                Box::new(|p| p.validator = Bytes::from_static(&[1, 2])),
            ),
            (
                "short sig",
                Box::new(|p| p.signature = Bytes::from_static(&[1])),
            ),
            (
                "bad hash",
                Box::new(|p| p.block_id = Bytes::from_static(&[1; 31])),
            ),
            ("bad type", Box::new(|p| p.r#type = 7)),
            ("unspecified type", Box::new(|p| p.r#type = 0)),
            ("zero height", Box::new(|p| p.height = 0)),
        ];
        for (name, mutate) in cases {
            let mut p = v.to_proto();
            mutate(&mut p);
            assert!(Vote::from_proto(p).is_err(), "{name}");
        }
        assert!(Block::decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(matches!(
            Block::from_proto(pb::Block::default()),
            Err(CodecError::Missing(_))
        ));
        let mut p =
            Proposal::new_signed(&k, "c", Height(3), Round(2), None, Hash::ZERO, Timestamp(0))
                .to_proto();
        p.pol_round = Some(2);
        assert!(Proposal::from_proto(p).is_err());
    }
}
