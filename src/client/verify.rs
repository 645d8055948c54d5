//! Checks a client can run alone: that a header is signed by more than 2/3 of
//! the validators, and that a state entry or a transaction is under it.

use crate::app::state::{Proven, StateProof, Terminal};
use crate::codec::{CodecError, Wire, hash_field};
use crate::pb;
use crate::types::{Hash, Header, ValidatorSet, merkle};

/// Why a proof does not hold.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The answer is malformed.
    #[error("malformed proof data: {0}")]
    Malformed(#[from] CodecError),
    /// A part is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The commit does not certify the header.
    #[error("header not certified: {0}")]
    Commit(String),
    /// The proof does not lead to the header's root.
    #[error("proof does not match the signed root")]
    Mismatch,
}

/// Checks that `signed` holds a header of `chain_id` certified by more than 2/3
/// of `validators`; returns the header.
pub fn verify_signed_header(
    chain_id: &str,
    validators: &ValidatorSet,
    signed: &pb::SignedHeader,
) -> Result<Header, VerifyError> {
    let header = Header::from_proto(
        signed
            .header
            .clone()
            .ok_or(VerifyError::Missing("header"))?,
    )?;
    let commit = crate::types::Commit::from_proto(
        signed
            .commit
            .clone()
            .ok_or(VerifyError::Missing("commit"))?,
    )?;
    if header.chain_id != chain_id {
        return Err(VerifyError::Commit(format!(
            "header is of chain {:?}, expected {chain_id:?}",
            header.chain_id
        )));
    }
    commit
        .verify(chain_id, validators, header.height, &header.id())
        .map_err(|e| VerifyError::Commit(e.to_string()))?;
    Ok(header)
}

/// The proof from its wire form.
pub fn state_proof_from_proto(p: &pb::StateProof) -> Result<StateProof, VerifyError> {
    let siblings = p
        .siblings
        .iter()
        .map(|s| hash_field("proof.siblings", s))
        .collect::<Result<Vec<_>, _>>()?;
    if siblings.len() > 256 {
        return Err(VerifyError::Malformed(CodecError::Invalid {
            field: "proof.siblings",
            reason: "deeper than 256 levels".into(),
        }));
    }
    let terminal = if p.leaf_key_hash.is_empty() {
        Terminal::Empty
    } else {
        Terminal::Leaf {
            kh: hash_field("proof.leaf_key_hash", &p.leaf_key_hash)?,
            value_hash: hash_field("proof.leaf_value_hash", &p.leaf_value_hash)?,
        }
    };
    Ok(StateProof { siblings, terminal })
}

/// Checks that under `root` the state holds `value` at `key` (or, for `None`,
/// nothing).
pub fn verify_state(
    root: &Hash,
    key: &[u8],
    value: Option<&[u8]>,
    proof: &pb::StateProof,
) -> Result<(), VerifyError> {
    let p = state_proof_from_proto(proof)?;
    let kh = Hash::digest(key);
    let expected = match value {
        Some(v) => Proven::Present(Hash::digest(v)),
        None => Proven::Absent,
    };
    match p.verify(&kh, root) {
        Some(got) if got == expected => Ok(()),
        _ => Err(VerifyError::Mismatch),
    }
}

/// Checks that `tx` is in the block whose header has `data_hash`.
pub fn verify_tx_inclusion(
    data_hash: &Hash,
    tx: &[u8],
    proof: &pb::MerkleProof,
) -> Result<(), VerifyError> {
    let siblings = proof
        .siblings
        .iter()
        .map(|s| hash_field("proof.siblings", s))
        .collect::<Result<Vec<_>, _>>()?;
    let p = merkle::MerkleProof {
        index: proof.index,
        total: proof.total,
        siblings,
    };
    if p.verify(&merkle::leaf_hash(tx), data_hash) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}
