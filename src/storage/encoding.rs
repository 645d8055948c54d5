//! What storage writes, byte for byte: keys, block records, checksummed frames,
//! WAL entries and the signing state.
//!
//! Blocks, commits, votes and proposals inside the records use their wire
//! encodings ([`Wire`]); the records around them are the messages of
//! `proto/consort/v1/storage.proto`.

use bytes::Bytes;
use prost::Message;

use crate::codec::{CodecError, Wire, hash_field};
use crate::consensus::{PersistedState, SignedMessage};
use crate::pb;
use crate::types::{Block, BlockId, Commit, Hash, Height, Round};

use super::{StorageError, WalEntry};

// ---- keys ----

/// Key of a height in the blocks tree: big-endian, so that key order is height
/// order and the log is written sequentially.
pub(super) fn height_key(height: Height) -> [u8; 8] {
    height.0.to_be_bytes()
}

/// The height a blocks-tree key stands for.
pub(super) fn key_height(key: &[u8]) -> Result<Height, StorageError> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| StorageError::corrupt("block key", hex::encode(key), "not 8 bytes"))?;
    Ok(Height(u64::from_be_bytes(arr)))
}

/// Key of a WAL entry: height then a sequence number, both big-endian, so that
/// the entries of a height are contiguous and in append order.
pub(super) fn wal_key(height: Height, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&height.0.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of a WAL key, if it is one.
pub(super) fn wal_key_seq(key: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    (key.len() == 16).then(|| u64::from_be_bytes(arr))
}

// ---- checksummed frames ----

/// Bytes before the payload of a frame: its length and its CRC-32, little-endian.
const FRAME_HEADER: usize = 8;

/// `payload` behind its length and CRC-32, so that a truncated or altered copy is
/// recognised as such.
pub(super) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    // Records are far below 4 GiB (frames carry one block at most); a longer
    // payload would get a length that fails the check on read, never garbage.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a frame, or why the frame is not intact.
pub(super) fn unframe(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < FRAME_HEADER {
        return Err(format!(
            "{} bytes, shorter than the {FRAME_HEADER}-byte frame header",
            bytes.len()
        ));
    }
    let (header, payload) = bytes.split_at(FRAME_HEADER);
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if payload.len() != len {
        return Err(format!(
            "payload is {} bytes, the frame says {len} (truncated or torn)",
            payload.len()
        ));
    }
    let actual = crc32fast::hash(payload);
    if actual != crc {
        return Err(format!(
            "checksum {actual:08x} does not match the recorded {crc:08x}"
        ));
    }
    Ok(payload)
}

// ---- block records ----

/// A block record as read back: the id, and the encoded block and commit, not yet
/// decoded (serving a peer needs only the bytes).
pub(super) struct BlockRecord {
    /// Id of the block.
    pub(super) block_id: BlockId,
    /// The encoded block.
    pub(super) block: Bytes,
    /// The encoded commit.
    pub(super) commit: Bytes,
    /// The application's delta.
    pub(super) app_delta: Bytes,
}

/// The one value written per decided block.
pub(super) fn encode_block_record(
    block_id: &BlockId,
    block: &Block,
    commit: &Commit,
    app_delta: &[u8],
) -> Vec<u8> {
    pb::BlockRecord {
        block_id: Bytes::copy_from_slice(block_id.as_bytes()),
        block: Bytes::from(block.encode()),
        commit: Bytes::from(commit.encode()),
        app_delta: Bytes::copy_from_slice(app_delta),
    }
    .encode_to_vec()
}

const BLOCK_RECORD: &str = "block record";

fn at_height(height: Height) -> String {
    format!("height {height}")
}

impl BlockRecord {
    /// Decodes the record stored under `height` (the encoded parts are slices of
    /// `bytes`, not copies).
    pub(super) fn decode(height: Height, bytes: Vec<u8>) -> Result<BlockRecord, StorageError> {
        let corrupt =
            |e: &dyn std::fmt::Display| StorageError::corrupt(BLOCK_RECORD, at_height(height), e);
        let p = pb::BlockRecord::decode(Bytes::from(bytes)).map_err(|e| corrupt(&e))?;
        let block_id = hash_field("block_record.block_id", &p.block_id).map_err(|e| corrupt(&e))?;
        Ok(BlockRecord {
            block_id,
            block: p.block,
            commit: p.commit,
            app_delta: p.app_delta,
        })
    }

    /// The block, checked against the key and the recorded id.
    pub(super) fn decode_block(&self, height: Height) -> Result<Block, StorageError> {
        let block = Block::decode(&self.block)
            .map_err(|e| StorageError::corrupt(BLOCK_RECORD, at_height(height), e))?;
        if block.height() != height {
            return Err(StorageError::corrupt(
                BLOCK_RECORD,
                at_height(height),
                format!("holds a block of height {}", block.height()),
            ));
        }
        if block.id() != self.block_id {
            return Err(StorageError::corrupt(
                BLOCK_RECORD,
                at_height(height),
                format!(
                    "block hashes to {}, the record says {}",
                    block.id(),
                    self.block_id
                ),
            ));
        }
        Ok(block)
    }

    /// The commit, checked against the key and the recorded block id.
    pub(super) fn decode_commit(&self, height: Height) -> Result<Commit, StorageError> {
        let commit = Commit::decode(&self.commit)
            .map_err(|e| StorageError::corrupt(BLOCK_RECORD, at_height(height), e))?;
        if commit.height != height || commit.block_id != self.block_id {
            return Err(StorageError::corrupt(
                BLOCK_RECORD,
                at_height(height),
                format!(
                    "holds a commit for block {} at height {}",
                    commit.block_id, commit.height
                ),
            ));
        }
        Ok(commit)
    }
}

// ---- WAL entries ----

/// A WAL entry as stored: its protobuf in a checksummed frame.
pub(super) fn encode_wal_entry(entry: &WalEntry) -> Vec<u8> {
    frame(&entry.encode())
}

/// Decodes a stored WAL entry of `height`, or says why it is not one.
pub(super) fn decode_wal_entry(height: Height, bytes: &[u8]) -> Result<WalEntry, String> {
    let payload = unframe(bytes)?;
    let entry = WalEntry::decode(payload).map_err(|e| e.to_string())?;
    if entry.height() != height {
        return Err(format!(
            "entry of height {} logged under height {height}",
            entry.height()
        ));
    }
    Ok(entry)
}

impl Wire for WalEntry {
    type Proto = pb::WalRecord;

    fn to_proto(&self) -> pb::WalRecord {
        let entry = match self {
            WalEntry::Proposal { proposal, block } => {
                pb::wal_record::Entry::Proposal(pb::WalProposal {
                    proposal: Some(proposal.to_proto()),
                    block: Some(block.to_proto()),
                })
            }
            WalEntry::Vote(v) => pb::wal_record::Entry::Vote(v.to_proto()),
        };
        pb::WalRecord { entry: Some(entry) }
    }

    fn from_proto(p: pb::WalRecord) -> Result<WalEntry, CodecError> {
        match p.entry {
            Some(pb::wal_record::Entry::Proposal(wp)) => Ok(WalEntry::Proposal {
                proposal: Wire::from_proto(
                    wp.proposal
                        .ok_or(CodecError::Missing("wal_record.proposal.proposal"))?,
                )?,
                block: Wire::from_proto(
                    wp.block
                        .ok_or(CodecError::Missing("wal_record.proposal.block"))?,
                )?,
            }),
            Some(pb::wal_record::Entry::Vote(v)) => Ok(WalEntry::Vote(Wire::from_proto(v)?)),
            None => Err(CodecError::Missing("wal_record.entry")),
        }
    }
}

// ---- the signing state ----

fn round_value_to_proto(rv: &Option<(Round, BlockId)>) -> Option<pb::RoundValue> {
    rv.as_ref().map(|(round, id)| pb::RoundValue {
        round: round.0,
        block_id: Bytes::copy_from_slice(id.as_bytes()),
    })
}

fn round_value_from_proto(
    field: &'static str,
    rv: Option<pb::RoundValue>,
) -> Result<Option<(Round, Hash)>, CodecError> {
    rv.map(|rv| Ok((Round(rv.round), hash_field(field, &rv.block_id)?)))
        .transpose()
}

impl Wire for PersistedState {
    type Proto = pb::SigningState;

    fn to_proto(&self) -> pb::SigningState {
        let last_signed = self.last_signed.as_ref().map(|m| pb::SignedMessage {
            msg: Some(match m {
                SignedMessage::Proposal(p) => pb::signed_message::Msg::Proposal(p.to_proto()),
                SignedMessage::Vote(v) => pb::signed_message::Msg::Vote(v.to_proto()),
            }),
        });
        pb::SigningState {
            height: self.height.0,
            round: self.round.0,
            locked: round_value_to_proto(&self.locked),
            valid: round_value_to_proto(&self.valid),
            last_signed,
            votes: self.votes.iter().map(Wire::to_proto).collect(),
        }
    }

    fn from_proto(p: pb::SigningState) -> Result<PersistedState, CodecError> {
        let last_signed = match p.last_signed {
            None => None,
            Some(m) => Some(match m.msg {
                Some(pb::signed_message::Msg::Proposal(p)) => {
                    SignedMessage::Proposal(Wire::from_proto(p)?)
                }
                Some(pb::signed_message::Msg::Vote(v)) => SignedMessage::Vote(Wire::from_proto(v)?),
                None => return Err(CodecError::Missing("signing_state.last_signed.msg")),
            }),
        };
        Ok(PersistedState {
            height: Height(p.height),
            round: Round(p.round),
            locked: round_value_from_proto("signing_state.locked.block_id", p.locked)?,
            valid: round_value_from_proto("signing_state.valid.block_id", p.valid)?,
            last_signed,
            votes: p
                .votes
                .into_iter()
                .map(Wire::from_proto)
                .collect::<Result<_, _>>()?,
            // Kept in a file of its own: see `SigningStateFile`.
            valid_block: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_detect_truncation_and_bit_flips() {
        let f = frame(b"hello world");
        assert_eq!(unframe(&f).unwrap(), b"hello world");
        for cut in 0..f.len() {
            assert!(unframe(&f[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                assert!(unframe(&g).is_err(), "flip byte {i} bit {bit}");
            }
        }
        assert_eq!(unframe(&frame(b"")).unwrap(), b"");
    }

    #[test]
    fn keys_order_by_height_then_sequence() {
        assert!(height_key(Height(255)) < height_key(Height(256)));
        assert_eq!(key_height(&height_key(Height(77))).unwrap(), Height(77));
        assert!(key_height(&[1, 2, 3]).is_err());
        assert!(wal_key(Height(1), u64::MAX) < wal_key(Height(2), 0));
        assert!(wal_key(Height(2), 1) < wal_key(Height(2), 2));
        assert_eq!(wal_key_seq(&wal_key(Height(3), 9)), Some(9));
        assert_eq!(wal_key_seq(&[0; 15]), None);
    }
}
