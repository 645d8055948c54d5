//! Messages between peers, as domain values. Protobuf stays in [`super::wire`].

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::types::{Block, Commit, Evidence, Height, Proposal, Round, Vote};

/// A QUIC stream class. Each channel has its own long-lived stream per direction,
/// its own frame type, its own size limit and its own inbound queue, so that a
/// burst on one never delays another.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Votes and round status: small, latency-critical.
    Consensus,
    /// A signed proposal with the whole block it proposes.
    Proposal,
    /// Decided blocks with their commits, and requests for them.
    Block,
    /// Transaction gossip: bulk, lowest priority.
    Mempool,
}

impl Channel {
    /// Every channel, in the order of [`Channel::index`].
    pub const ALL: [Channel; 4] = [
        Channel::Consensus,
        Channel::Proposal,
        Channel::Block,
        Channel::Mempool,
    ];

    /// Position in [`Channel::ALL`] (for per-channel arrays).
    pub fn index(self) -> usize {
        match self {
            Channel::Consensus => 0,
            Channel::Proposal => 1,
            Channel::Block => 2,
            Channel::Mempool => 3,
        }
    }

    /// The byte that names this channel in a stream header.
    pub fn code(self) -> u8 {
        // The index is below 4, so the cast cannot truncate.
        self.index() as u8
    }

    /// The channel a stream-header byte names, if any.
    pub fn from_code(code: u8) -> Option<Channel> {
        Channel::ALL.get(usize::from(code)).copied()
    }

    /// Send priority of the channel's stream: QUIC sends queued data of a higher
    /// priority stream first, so votes overtake a block or a transaction burst.
    pub fn priority(self) -> i32 {
        match self {
            Channel::Consensus => 3,
            Channel::Proposal => 2,
            Channel::Block => 1,
            Channel::Mempool => 0,
        }
    }

    /// Lower-case name, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Consensus => "consensus",
            Channel::Proposal => "proposal",
            Channel::Block => "block",
            Channel::Mempool => "mempool",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a node tells its peers of where it stands in consensus, so that they can
/// re-send what it lacks (votes of the current round, the proposal, or the commit
/// of a height it is behind on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundStatus {
    /// Height the node is deciding.
    pub height: Height,
    /// Round it is in.
    pub round: Round,
    /// Step code: 0 propose, 1 prevote, 2 precommit, 3 commit (see
    /// `consensus::Step::code`).
    pub step: u32,
    /// Bit `i` (byte `i / 8`, bit `i % 8`, least significant first) set: the node
    /// holds the prevote of validator `i` for this round.
    pub prevotes: Vec<u8>,
    /// Same for precommits.
    pub precommits: Vec<u8>,
    /// Whether the node holds the proposal (with its block) of this round.
    pub has_proposal: bool,
    /// Lowest height the node can serve blocks from.
    pub base_height: Height,
}

/// A message between peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetMessage {
    /// A signed prevote or precommit ([`Channel::Consensus`]).
    Vote(Vote),
    /// The sender's round status ([`Channel::Consensus`]).
    Status(RoundStatus),
    /// Evidence of equivocation not committed yet ([`Channel::Consensus`]);
    /// verified by the receiver before it is pooled.
    Evidence(Vec<Evidence>),
    /// A signed proposal and the block it proposes ([`Channel::Proposal`]).
    Proposal {
        /// The signed proposal.
        proposal: Proposal,
        /// The block whose id the proposal signs.
        block: Arc<Block>,
    },
    /// A decided block with its commit ([`Channel::Block`]).
    Decided {
        /// The block.
        block: Arc<Block>,
        /// +2/3 precommits for it.
        commit: Commit,
    },
    /// Asks the peer for the decided block at this height ([`Channel::Block`]).
    BlockRequest(Height),
    /// Transactions the sender admitted to its pool ([`Channel::Mempool`]).
    Txs(Vec<Bytes>),
}

impl NetMessage {
    /// The channel this message travels on.
    pub fn channel(&self) -> Channel {
        match self {
            NetMessage::Vote(_) | NetMessage::Status(_) | NetMessage::Evidence(_) => {
                Channel::Consensus
            }
            NetMessage::Proposal { .. } => Channel::Proposal,
            NetMessage::Decided { .. } | NetMessage::BlockRequest(_) => Channel::Block,
            NetMessage::Txs(_) => Channel::Mempool,
        }
    }

    /// Short name of the variant, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            NetMessage::Vote(_) => "vote",
            NetMessage::Status(_) => "status",
            NetMessage::Evidence(_) => "evidence",
            NetMessage::Proposal { .. } => "proposal",
            NetMessage::Decided { .. } => "decided",
            NetMessage::BlockRequest(_) => "block_request",
            NetMessage::Txs(_) => "txs",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_codes_round_trip() {
        for ch in Channel::ALL {
            assert_eq!(Channel::from_code(ch.code()), Some(ch));
            assert_eq!(Channel::ALL[ch.index()], ch);
        }
        assert_eq!(Channel::from_code(4), None);
        assert_eq!(Channel::from_code(255), None);
    }
}
