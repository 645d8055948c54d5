//! The faults for which a peer is penalized, all of them, in one place.
//!
//! A penalty is only fair if every honest node would reach the same verdict on
//! the same message: otherwise two honest nodes that differ (one a height
//! behind, one with another view of the mempool) end up banning each other.
//! Each fault here is judged from the message alone, against the chain's fixed
//! rules (the validator set, the proposer schedule, hashes and signatures under
//! the one verification rule), never against this node's height, state or
//! timing. What a node cannot judge alike (a far-future vote, a transaction
//! whose nonce is stale here, a certified block that does not apply to this
//! node's state) is dropped or reported, not penalized.
//!
//! Undecodable and oversized frames never reach this list: the network layer
//! closes the connection that sent them (`consort_p2p_bad_frames_total`).

use crate::net::Channel;
use crate::types::Height;

/// A fault of a peer, judged alike by every honest node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerFault {
    /// A message on a channel that does not carry its kind.
    #[error("message on the wrong channel")]
    WrongChannel,
    /// A vote signed by a key that is not a validator's.
    #[error("vote from a key that is not a validator")]
    VoteFromNonValidator,
    /// A vote whose signature does not verify.
    #[error("vote with a bad signature")]
    BadVoteSignature,
    /// A proposal whose signature does not verify.
    #[error("proposal with a bad signature")]
    BadProposalSignature,
    /// A proposal whose block is not the block it names.
    #[error("proposal does not match its block")]
    ProposalBlockMismatch,
    /// A proposal signed by a validator that is not the proposer of its
    /// height and round (honest nodes relay only proposals their core took).
    #[error("proposal for height {height} from a key that is not its round's proposer")]
    NotTheProposer {
        /// The proposal's height.
        height: Height,
    },
    /// A block sent with a commit that does not certify it.
    #[error("block {height} with a commit that does not certify it: {reason}")]
    UncertifiedBlock {
        /// The block's height.
        height: Height,
        /// What is wrong with the commit.
        reason: String,
    },
    /// A block whose certified header does not match its body (transactions,
    /// evidence or last commit): altered by whoever sent it.
    #[error("block {height} whose body does not match its certified header: {reason}")]
    AlteredBlock {
        /// The block's height.
        height: Height,
        /// Which part does not match.
        reason: String,
    },
    /// Evidence whose votes do not prove an equivocation (bad signature, not
    /// a validator, votes that do not conflict).
    #[error("invalid evidence")]
    InvalidEvidence,
    /// Gossiped transactions that cannot be decoded, are too large, or carry a
    /// bad signature.
    #[error("{count} gossiped transactions malformed or badly signed")]
    InvalidTxs {
        /// How many in the frame.
        count: usize,
    },
    /// More messages on a channel than its rate allows (the excess was dropped).
    #[error("message flood on the {channel} channel ({dropped} dropped)")]
    Flood {
        /// The channel.
        channel: Channel,
        /// Messages dropped.
        dropped: u64,
    },
}

impl PeerFault {
    /// Penalty points (see `actor::BAN_SCORE`: 100 points, decaying one per
    /// second, ban a peer). A forged signature or an altered block is proof
    /// enough in two messages; a flood only when it goes on.
    pub fn points(&self) -> u32 {
        match self {
            PeerFault::WrongChannel
            | PeerFault::BadVoteSignature
            | PeerFault::BadProposalSignature
            | PeerFault::ProposalBlockMismatch
            | PeerFault::NotTheProposer { .. }
            | PeerFault::UncertifiedBlock { .. }
            | PeerFault::AlteredBlock { .. }
            | PeerFault::InvalidEvidence => 50,
            PeerFault::VoteFromNonValidator => 20,
            PeerFault::InvalidTxs { count } => 10 * (*count).min(10) as u32,
            // A point per ten messages dropped, at least one per report.
            PeerFault::Flood { dropped, .. } => {
                u32::try_from(dropped / 10).unwrap_or(u32::MAX).max(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_per_fault() {
        let cases = [
            (PeerFault::BadVoteSignature, 50),
            (PeerFault::VoteFromNonValidator, 20),
            (PeerFault::InvalidTxs { count: 1 }, 10),
            (PeerFault::InvalidTxs { count: 1000 }, 100),
            (
                PeerFault::Flood {
                    channel: Channel::Mempool,
                    dropped: 3,
                },
                1,
            ),
            (
                PeerFault::Flood {
                    channel: Channel::Mempool,
                    dropped: 250,
                },
                25,
            ),
            (
                PeerFault::AlteredBlock {
                    height: Height(3),
                    reason: "data hash".into(),
                },
                50,
            ),
        ];
        for (fault, points) in cases {
            assert_eq!(fault.points(), points, "{fault}");
        }
    }
}
