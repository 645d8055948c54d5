//! Frames on the wire: a `u32` big-endian length, then the protobuf frame
//! message of the stream's channel (`ConsensusFrame`, `ProposalFrame`,
//! `BlockFrame`, `MempoolFrame` of `proto/consort/v1/wire.proto`).
//!
//! The length is checked against the channel's limit before any buffer is
//! allocated for the body; the body is converted to a [`NetMessage`] with the
//! validating conversions of [`crate::codec`]. Signatures are not checked here:
//! the node verifies them in batches.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use super::{Channel, ChannelLimits, NetMessage, RoundStatus};
use crate::codec::{CodecError, Wire};
use crate::pb;
use crate::types::{Block, Commit, Evidence, Height, Proposal, Round, Vote};

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Longest vote bitmap accepted in a [`RoundStatus`] (8192 validators), far
/// beyond a consortium's size.
pub const MAX_STATUS_BITMAP: usize = 1024;

/// Most pieces of evidence in one consensus frame.
pub const MAX_EVIDENCE_PER_FRAME: usize = 64;

/// Highest step code of a [`RoundStatus`] (commit).
pub const MAX_STATUS_STEP: u32 = 3;

/// Why a frame cannot be sent or was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The frame's length exceeds the channel's limit.
    #[error("{channel} frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The channel.
        channel: Channel,
        /// Length of the frame body.
        len: u64,
        /// The channel's limit.
        max: usize,
    },
    /// The body is not a valid frame of the channel.
    #[error("undecodable {channel} frame: {source}")]
    Codec {
        /// The channel.
        channel: Channel,
        /// What is wrong.
        #[source]
        source: CodecError,
    },
    /// The stream ended inside a frame, or a frame's length disagrees with the
    /// bytes given.
    #[error("truncated {channel} frame: {got} of {expected} bytes")]
    Truncated {
        /// The channel.
        channel: Channel,
        /// Bytes expected.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
}

impl WireError {
    fn codec(channel: Channel, source: impl Into<CodecError>) -> WireError {
        WireError::Codec {
            channel,
            source: source.into(),
        }
    }

    fn invalid(channel: Channel, field: &'static str, reason: impl Into<String>) -> WireError {
        WireError::codec(
            channel,
            CodecError::Invalid {
                field,
                reason: reason.into(),
            },
        )
    }
}

/// Encodes a message as a complete frame (length prefix and body), ready to be
/// shared by every peer it is sent to. Fails only if the body is larger than
/// the prefix can express; the caller checks the channel's limit.
pub fn encode_frame(msg: &NetMessage) -> Result<Bytes, WireError> {
    match msg {
        NetMessage::Vote(v) => frame_of(
            Channel::Consensus,
            &pb::ConsensusFrame {
                msg: Some(pb::consensus_frame::Msg::Vote(v.to_proto())),
            },
        ),
        NetMessage::Status(s) => frame_of(
            Channel::Consensus,
            &pb::ConsensusFrame {
                msg: Some(pb::consensus_frame::Msg::Status(s.to_proto())),
            },
        ),
        NetMessage::Evidence(list) => frame_of(
            Channel::Consensus,
            &pb::ConsensusFrame {
                msg: Some(pb::consensus_frame::Msg::Evidence(pb::EvidenceList {
                    evidence: list.iter().map(Wire::to_proto).collect(),
                })),
            },
        ),
        NetMessage::Proposal { proposal, block } => frame_of(
            Channel::Proposal,
            &pb::ProposalFrame {
                proposal: Some(proposal.to_proto()),
                block: Some(block.to_proto()),
            },
        ),
        NetMessage::Decided { block, commit } => frame_of(
            Channel::Block,
            &pb::BlockFrame {
                msg: Some(pb::block_frame::Msg::Decided(pb::DecidedBlock {
                    block: Some(block.to_proto()),
                    commit: Some(commit.to_proto()),
                })),
            },
        ),
        NetMessage::BlockRequest(h) => frame_of(
            Channel::Block,
            &pb::BlockFrame {
                msg: Some(pb::block_frame::Msg::Request(pb::BlockRequest {
                    height: h.0,
                })),
            },
        ),
        NetMessage::Txs(txs) => frame_of(Channel::Mempool, &pb::MempoolFrame { txs: txs.clone() }),
    }
}

fn frame_of(channel: Channel, m: &impl Message) -> Result<Bytes, WireError> {
    let len = m.encoded_len();
    let prefix = u32::try_from(len).map_err(|_| WireError::TooLarge {
        channel,
        len: len as u64,
        max: u32::MAX as usize,
    })?;
    let mut buf = BytesMut::with_capacity(LEN_PREFIX + len);
    buf.put_u32(prefix);
    // A BytesMut grows as needed, so encoding cannot run out of room.
    m.encode_raw(&mut buf);
    Ok(buf.freeze())
}

/// Length of a frame's body (the frame minus its prefix).
pub fn body_len(frame: &Bytes) -> usize {
    frame.len().saturating_sub(LEN_PREFIX)
}

/// Checks a received length prefix against the channel's limit, before anything
/// is allocated for the body.
pub fn check_len(channel: Channel, len: u32, limits: &ChannelLimits) -> Result<usize, WireError> {
    let max = limits.get(channel);
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    if len_usize > max {
        return Err(WireError::TooLarge {
            channel,
            len: u64::from(len),
            max,
        });
    }
    Ok(len_usize)
}

/// Decodes and validates a complete frame (prefix and body), as one buffer.
/// The stream reader uses [`check_len`] and [`decode_body`] instead; this is for
/// tests and tools.
pub fn decode_frame(
    channel: Channel,
    frame: Bytes,
    limits: &ChannelLimits,
) -> Result<NetMessage, WireError> {
    let Some(prefix) = frame.get(..LEN_PREFIX) else {
        return Err(WireError::Truncated {
            channel,
            expected: LEN_PREFIX,
            got: frame.len(),
        });
    };
    let mut be = [0u8; LEN_PREFIX];
    be.copy_from_slice(prefix);
    let len = check_len(channel, u32::from_be_bytes(be), limits)?;
    let body = frame.slice(LEN_PREFIX..);
    if body.len() != len {
        return Err(WireError::Truncated {
            channel,
            expected: len,
            got: body.len(),
        });
    }
    decode_body(channel, body)
}

/// Decodes a frame body of `channel` into a validated message. Bytes fields
/// (transactions) share `body`'s buffer instead of being copied.
pub fn decode_body(channel: Channel, body: Bytes) -> Result<NetMessage, WireError> {
    match channel {
        Channel::Consensus => {
            let f = pb::ConsensusFrame::decode(body).map_err(|e| WireError::codec(channel, e))?;
            match f.msg {
                Some(pb::consensus_frame::Msg::Vote(v)) => Vote::from_proto(v)
                    .map(NetMessage::Vote)
                    .map_err(|e| WireError::codec(channel, e)),
                Some(pb::consensus_frame::Msg::Status(s)) => RoundStatus::from_proto(s)
                    .map(NetMessage::Status)
                    .map_err(|e| WireError::codec(channel, e)),
                Some(pb::consensus_frame::Msg::Evidence(l)) => {
                    if l.evidence.len() > MAX_EVIDENCE_PER_FRAME {
                        return Err(WireError::invalid(
                            channel,
                            "evidence_list.evidence",
                            format!(
                                "{} pieces, at most {MAX_EVIDENCE_PER_FRAME}",
                                l.evidence.len()
                            ),
                        ));
                    }
                    l.evidence
                        .into_iter()
                        .map(Evidence::from_proto)
                        .collect::<Result<Vec<_>, _>>()
                        .map(NetMessage::Evidence)
                        .map_err(|e| WireError::codec(channel, e))
                }
                None => Err(WireError::codec(
                    channel,
                    CodecError::Missing("consensus_frame.msg"),
                )),
            }
        }
        Channel::Proposal => {
            let f = pb::ProposalFrame::decode(body).map_err(|e| WireError::codec(channel, e))?;
            let proposal = Proposal::from_proto(
                f.proposal
                    .ok_or(CodecError::Missing("proposal_frame.proposal"))
                    .map_err(|e| WireError::codec(channel, e))?,
            )
            .map_err(|e| WireError::codec(channel, e))?;
            let block = Block::from_proto(
                f.block
                    .ok_or(CodecError::Missing("proposal_frame.block"))
                    .map_err(|e| WireError::codec(channel, e))?,
            )
            .map_err(|e| WireError::codec(channel, e))?;
            if block.height() != proposal.height {
                return Err(WireError::invalid(
                    channel,
                    "proposal_frame.block",
                    format!(
                        "block height {} differs from proposal height {}",
                        block.height(),
                        proposal.height
                    ),
                ));
            }
            if block.id() != proposal.block_id {
                return Err(WireError::invalid(
                    channel,
                    "proposal_frame.block",
                    "block id differs from the proposal's block id",
                ));
            }
            Ok(NetMessage::Proposal {
                proposal,
                block: Arc::new(block),
            })
        }
        Channel::Block => {
            let f = pb::BlockFrame::decode(body).map_err(|e| WireError::codec(channel, e))?;
            match f.msg {
                Some(pb::block_frame::Msg::Decided(d)) => {
                    let block = Block::from_proto(
                        d.block
                            .ok_or(CodecError::Missing("decided_block.block"))
                            .map_err(|e| WireError::codec(channel, e))?,
                    )
                    .map_err(|e| WireError::codec(channel, e))?;
                    let commit = Commit::from_proto(
                        d.commit
                            .ok_or(CodecError::Missing("decided_block.commit"))
                            .map_err(|e| WireError::codec(channel, e))?,
                    )
                    .map_err(|e| WireError::codec(channel, e))?;
                    if commit.height != block.height() || commit.block_id != block.id() {
                        return Err(WireError::invalid(
                            channel,
                            "decided_block.commit",
                            "commit is not for this block",
                        ));
                    }
                    Ok(NetMessage::Decided {
                        block: Arc::new(block),
                        commit,
                    })
                }
                Some(pb::block_frame::Msg::Request(r)) => {
                    if r.height == 0 {
                        return Err(WireError::invalid(
                            channel,
                            "block_request.height",
                            "must be at least 1",
                        ));
                    }
                    Ok(NetMessage::BlockRequest(Height(r.height)))
                }
                None => Err(WireError::codec(
                    channel,
                    CodecError::Missing("block_frame.msg"),
                )),
            }
        }
        Channel::Mempool => {
            let f = pb::MempoolFrame::decode(body).map_err(|e| WireError::codec(channel, e))?;
            if f.txs.is_empty() {
                return Err(WireError::invalid(
                    channel,
                    "mempool_frame.txs",
                    "no transactions",
                ));
            }
            if f.txs.iter().any(Bytes::is_empty) {
                return Err(WireError::invalid(
                    channel,
                    "mempool_frame.txs",
                    "empty transaction",
                ));
            }
            Ok(NetMessage::Txs(f.txs))
        }
    }
}

impl Wire for RoundStatus {
    type Proto = pb::RoundStatus;

    fn to_proto(&self) -> pb::RoundStatus {
        pb::RoundStatus {
            height: self.height.0,
            round: self.round.0,
            step: self.step,
            prevotes: Bytes::copy_from_slice(&self.prevotes),
            precommits: Bytes::copy_from_slice(&self.precommits),
            has_proposal: self.has_proposal,
            base_height: self.base_height.0,
        }
    }

    fn from_proto(p: pb::RoundStatus) -> Result<RoundStatus, CodecError> {
        if p.height == 0 {
            return Err(CodecError::Invalid {
                field: "round_status.height",
                reason: "must be at least 1".into(),
            });
        }
        if p.step > MAX_STATUS_STEP {
            return Err(CodecError::Invalid {
                field: "round_status.step",
                reason: format!("unknown step {}", p.step),
            });
        }
        for (field, bitmap) in [
            ("round_status.prevotes", &p.prevotes),
            ("round_status.precommits", &p.precommits),
        ] {
            if bitmap.len() > MAX_STATUS_BITMAP {
                return Err(CodecError::Invalid {
                    field,
                    reason: format!("{} bytes, more than {MAX_STATUS_BITMAP}", bitmap.len()),
                });
            }
        }
        Ok(RoundStatus {
            height: Height(p.height),
            round: Round(p.round),
            step: p.step,
            prevotes: p.prevotes.to_vec(),
            precommits: p.precommits.to_vec(),
            has_proposal: p.has_proposal,
            base_height: Height(p.base_height),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Hash, Header, Keypair, Timestamp, VoteType};

    fn block(height: u64, txs: Vec<Bytes>) -> Block {
        let k = Keypair::from_seed([7; 32]);
        Block {
            header: Header {
                chain_id: "c".into(),
                height: Height(height),
                time: Timestamp(1),
                last_block_id: None,
                last_commit_hash: Hash::ZERO,
                data_hash: Block::data_hash_of(&txs),
                app_hash: Hash::ZERO,
                validators_hash: Hash::ZERO,
                evidence_hash: Block::evidence_hash_of(&[]),
                proposer: k.public(),
            },
            txs,
            last_commit: None,
            evidence: vec![],
        }
    }

    fn samples() -> Vec<NetMessage> {
        let k = Keypair::from_seed([3; 32]);
        let b = block(
            5,
            vec![Bytes::from_static(b"tx1"), Bytes::from_static(b"tx2")],
        );
        let vote = Vote::new_signed(
            &k,
            "c",
            VoteType::Precommit,
            Height(5),
            Round(1),
            Some(b.id()),
            Timestamp(9),
        );
        let proposal =
            Proposal::new_signed(&k, "c", Height(5), Round(1), None, b.id(), Timestamp(9));
        let commit =
            Commit::from_precommits(Height(5), Round(1), b.id(), std::slice::from_ref(&vote));
        let other = Vote::new_signed(
            &k,
            "c",
            VoteType::Precommit,
            Height(5),
            Round(1),
            None,
            Timestamp(9),
        );
        let evidence =
            Evidence::DuplicateVote(crate::types::DuplicateVote::new(vote.clone(), other).unwrap());
        vec![
            NetMessage::Vote(vote),
            NetMessage::Evidence(vec![evidence]),
            NetMessage::Status(RoundStatus {
                height: Height(5),
                round: Round(1),
                step: 2,
                prevotes: vec![0b101],
                precommits: vec![],
                has_proposal: true,
                base_height: Height(1),
            }),
            NetMessage::Proposal {
                proposal,
                block: Arc::new(b.clone()),
            },
            NetMessage::Decided {
                block: Arc::new(b),
                commit,
            },
            NetMessage::BlockRequest(Height(4)),
            NetMessage::Txs(vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]),
        ]
    }

    #[test]
    fn evidence_frames_are_bounded() {
        let limits = ChannelLimits::default();
        let Some(NetMessage::Evidence(one)) = samples().into_iter().nth(1) else {
            panic!("sample order changed");
        };
        let full = NetMessage::Evidence(vec![one[0].clone(); MAX_EVIDENCE_PER_FRAME]);
        let frame = encode_frame(&full).unwrap();
        assert!(decode_frame(Channel::Consensus, frame, &limits).is_ok());
        let over = NetMessage::Evidence(vec![one[0].clone(); MAX_EVIDENCE_PER_FRAME + 1]);
        let frame = encode_frame(&over).unwrap();
        assert!(matches!(
            decode_frame(Channel::Consensus, frame, &limits),
            Err(WireError::Codec { .. })
        ));
    }

    #[test]
    fn every_message_round_trips_on_its_channel() {
        let limits = ChannelLimits::default();
        for msg in samples() {
            let frame = encode_frame(&msg).unwrap();
            let decoded = decode_frame(msg.channel(), frame.clone(), &limits).unwrap();
            assert_eq!(decoded, msg, "{}", msg.kind());
            // Another channel's decoder never accepts it as the same message.
            for ch in Channel::ALL.into_iter().filter(|c| *c != msg.channel()) {
                if let Ok(other) = decode_frame(ch, frame.clone(), &limits) {
                    assert_ne!(other, msg);
                }
            }
        }
    }

    #[test]
    fn length_is_checked_before_the_body() {
        let limits = ChannelLimits::uniform(10);
        assert!(matches!(
            check_len(Channel::Mempool, 11, &limits),
            Err(WireError::TooLarge {
                len: 11,
                max: 10,
                ..
            })
        ));
        assert_eq!(check_len(Channel::Mempool, 10, &limits).unwrap(), 10);
        let frame = encode_frame(&NetMessage::Txs(vec![Bytes::from(vec![1u8; 64])])).unwrap();
        assert!(matches!(
            decode_frame(Channel::Mempool, frame, &limits),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_and_invalid_frames_are_typed_errors() {
        let limits = ChannelLimits::default();
        let garbage = Bytes::from_static(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]);
        for ch in Channel::ALL {
            assert!(matches!(
                decode_frame(ch, garbage.clone(), &limits),
                Err(WireError::Codec { .. })
            ));
            // An empty frame holds no message.
            assert!(decode_frame(ch, Bytes::from_static(&[0, 0, 0, 0]), &limits).is_err());
        }
        assert!(matches!(
            decode_frame(
                Channel::Consensus,
                Bytes::from_static(&[0, 0, 0, 9, 1]),
                &limits
            ),
            Err(WireError::Truncated { .. })
        ));

        // A proposal whose block is not the proposed one.
        let k = Keypair::from_seed([3; 32]);
        let b = block(5, vec![]);
        let proposal =
            Proposal::new_signed(&k, "c", Height(5), Round(0), None, Hash::ZERO, Timestamp(1));
        let msg = NetMessage::Proposal {
            proposal,
            block: Arc::new(b),
        };
        let frame = encode_frame(&msg).unwrap();
        assert!(decode_frame(Channel::Proposal, frame, &limits).is_err());

        // A status with an unknown step or a huge bitmap.
        for s in [
            RoundStatus {
                height: Height(1),
                step: 4,
                ..RoundStatus::default()
            },
            RoundStatus {
                height: Height(1),
                prevotes: vec![0; MAX_STATUS_BITMAP + 1],
                ..RoundStatus::default()
            },
            RoundStatus::default(),
        ] {
            let frame = encode_frame(&NetMessage::Status(s)).unwrap();
            assert!(decode_frame(Channel::Consensus, frame, &limits).is_err());
        }
        let frame = encode_frame(&NetMessage::Txs(vec![])).unwrap();
        assert!(decode_frame(Channel::Mempool, frame, &limits).is_err());
    }
}
