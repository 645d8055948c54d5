//! The index of committed evidence: which equivocations a block already
//! carries, so that each is committed exactly once, and what an operator lists.
//!
//! Layout (tree `evidence`):
//! - `0x00 ++ evidence hash` -> height (8 bytes, big-endian) of the block that
//!   committed it;
//! - `0x01 ++ height ++ position (4 bytes)` -> the evidence (protobuf);
//! - the empty key -> the highest indexed height.
//!
//! Like the transaction index it is derived from the block log and written
//! without a flush; after a crash [`EvidenceStore::index_missing_evidence`]
//! rebuilds what was lost before consensus starts.

use prost::Message as _;

use super::StorageError;
use super::engine::{Engine, TreeId};
use super::kv_store::KvStore;
use crate::codec::Wire;
use crate::types::{Evidence, Hash, Height};

const BY_HASH: u8 = 0;
const BY_HEIGHT: u8 = 1;

/// Evidence committed in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedEvidence {
    /// Height of the block that carries it.
    pub height: Height,
    /// The evidence.
    pub evidence: Evidence,
}

/// Looking up committed evidence.
pub trait EvidenceStore: Send + Sync + 'static {
    /// Indexes the evidence (in block order) of block `height`. Called once per
    /// committed block, with or without evidence, so that the indexed height
    /// follows the log.
    fn index_evidence(&self, height: Height, evidence: &[Evidence]) -> Result<(), StorageError>;

    /// The height of the block that committed the evidence with this hash.
    fn evidence_committed_at(&self, hash: &Hash) -> Result<Option<Height>, StorageError>;

    /// At most `limit` pieces of committed evidence of heights `from..=to`, in
    /// height and block order.
    fn list_evidence(
        &self,
        from: Height,
        to: Height,
        limit: usize,
    ) -> Result<Vec<CommittedEvidence>, StorageError>;

    /// Indexes stored blocks above the indexed height (after a crash).
    fn index_missing_evidence(&self) -> Result<(), StorageError>;
}

fn hash_key(hash: &Hash) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(BY_HASH);
    k.extend_from_slice(hash.as_bytes());
    k
}

fn height_key(height: Height, pos: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(BY_HEIGHT);
    k.extend_from_slice(&height.0.to_be_bytes());
    k.extend_from_slice(&pos.to_be_bytes());
    k
}

fn u64_of(v: &[u8], what: &str) -> Result<u64, StorageError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| StorageError::corrupt("evidence index", what, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(b))
}

impl<E: Engine> KvStore<E> {
    pub(super) fn index_evidence(
        &self,
        height: Height,
        evidence: &[Evidence],
    ) -> Result<(), StorageError> {
        let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(2 * evidence.len() + 1);
        for (i, ev) in evidence.iter().enumerate() {
            let pos = u32::try_from(i)
                .map_err(|_| StorageError::corrupt("evidence index", height, "too many"))?;
            ops.push((hash_key(&ev.hash()), Some(height.0.to_be_bytes().to_vec())));
            ops.push((height_key(height, pos), Some(ev.to_proto().encode_to_vec())));
        }
        ops.push((Vec::new(), Some(height.0.to_be_bytes().to_vec())));
        self.engine.apply(TreeId::Evidence, &ops)
    }

    pub(super) fn evidence_committed_at(
        &self,
        hash: &Hash,
    ) -> Result<Option<Height>, StorageError> {
        match self.engine.get(TreeId::Evidence, &hash_key(hash))? {
            Some(v) => Ok(Some(Height(u64_of(&v, &hash.to_string())?))),
            None => Ok(None),
        }
    }

    pub(super) fn list_evidence(
        &self,
        from: Height,
        to: Height,
        limit: usize,
    ) -> Result<Vec<CommittedEvidence>, StorageError> {
        if from > to || limit == 0 {
            return Ok(Vec::new());
        }
        let start = height_key(from, 0);
        // Exclusive end: the first key of height to+1 (or past every height).
        let end = match to.0.checked_add(1) {
            Some(next) => height_key(Height(next), 0),
            None => vec![BY_HEIGHT + 1],
        };
        self.engine
            .scan_limit(TreeId::Evidence, &start, &end, limit)?
            .into_iter()
            .map(|(k, v)| {
                let height = Height(u64_of(&k[1..9], "evidence key")?);
                let proto = crate::pb::Evidence::decode(v.as_slice())
                    .map_err(|e| StorageError::corrupt("evidence record", height, e.to_string()))?;
                let evidence = Evidence::from_proto(proto)
                    .map_err(|e| StorageError::corrupt("evidence record", height, e.to_string()))?;
                Ok(CommittedEvidence { height, evidence })
            })
            .collect()
    }

    /// Indexes the blocks of `log` above this index's height.
    pub(super) fn index_missing_evidence<L: Engine>(
        &self,
        log: &KvStore<L>,
    ) -> Result<(), StorageError> {
        let indexed = match self.engine.get(TreeId::Evidence, &[])? {
            Some(v) => u64_of(&v, "indexed height")?,
            None => 0,
        };
        let from = (indexed + 1).max(log.base_height().0);
        for h in from..=log.latest_height().0 {
            if let Some(b) = log.block(Height(h))? {
                self.index_evidence(Height(h), &b.evidence)?;
            }
        }
        Ok(())
    }
}

macro_rules! impl_evidence_index {
    ($store:ty) => {
        impl $crate::storage::EvidenceStore for $store {
            fn index_evidence(
                &self,
                height: $crate::types::Height,
                evidence: &[$crate::types::Evidence],
            ) -> Result<(), $crate::storage::StorageError> {
                self.aux.index_evidence(height, evidence)
            }

            fn evidence_committed_at(
                &self,
                hash: &$crate::types::Hash,
            ) -> Result<Option<$crate::types::Height>, $crate::storage::StorageError> {
                self.aux.evidence_committed_at(hash)
            }

            fn list_evidence(
                &self,
                from: $crate::types::Height,
                to: $crate::types::Height,
                limit: usize,
            ) -> Result<Vec<$crate::storage::CommittedEvidence>, $crate::storage::StorageError>
            {
                self.aux.list_evidence(from, to, limit)
            }

            fn index_missing_evidence(&self) -> Result<(), $crate::storage::StorageError> {
                self.aux.index_missing_evidence(&self.inner)
            }
        }
    };
}

pub(super) use impl_evidence_index;
