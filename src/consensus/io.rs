//! What goes into the state machine and what comes out.

use std::sync::Arc;
use std::time::Duration;

use crate::types::{
    Block, BlockId, Commit, DuplicateVote, Height, Proposal, Round, Timestamp, Vote,
};

/// The step of a round (step_p of the paper), plus the wait after a decision.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Waiting for the proposal.
    Propose,
    /// Prevoted; waiting for prevotes.
    Prevote,
    /// Precommitted; waiting for precommits.
    Precommit,
    /// Decided this height; waiting for the runtime to start the next.
    Commit,
}

impl Step {
    /// Stable name for logs, metrics and status.
    pub fn as_str(&self) -> &'static str {
        match self {
            Step::Propose => "propose",
            Step::Prevote => "prevote",
            Step::Precommit => "precommit",
            Step::Commit => "commit",
        }
    }

    /// Stable number for the wire (0..=3).
    pub fn code(&self) -> u32 {
        match self {
            Step::Propose => 0,
            Step::Prevote => 1,
            Step::Precommit => 2,
            Step::Commit => 3,
        }
    }
}

/// Which step a timeout belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// OnTimeoutPropose (L57).
    Propose,
    /// OnTimeoutPrevote (L61).
    Prevote,
    /// OnTimeoutPrecommit (L65).
    Precommit,
}

/// A timeout to schedule, and to feed back as [`Input::Timeout`] when it fires.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timeout {
    /// Height it belongs to.
    pub height: Height,
    /// Round it belongs to.
    pub round: Round,
    /// Step it belongs to.
    pub kind: TimeoutKind,
}

/// The last message a validator signed, kept with the lock so that after a crash
/// it neither signs a conflicting message nor forgets its lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedMessage {
    /// A proposal (the block is not part of the signing state).
    Proposal(Proposal),
    /// A vote.
    Vote(Vote),
}

impl SignedMessage {
    /// The (height, round, step) slot of the message; slots only ever increase.
    pub fn slot(&self) -> (Height, Round, u8) {
        match self {
            SignedMessage::Proposal(p) => (p.height, p.round, 0),
            SignedMessage::Vote(v) => (
                v.height,
                v.round,
                match v.vote_type {
                    crate::types::VoteType::Prevote => 1,
                    crate::types::VoteType::Precommit => 2,
                },
            ),
        }
    }
}

/// The state that must be durable before a signed message leaves the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistedState {
    /// Height of the round below.
    pub height: Height,
    /// Round we were in when we last signed.
    pub round: Round,
    /// lockedRound/lockedValue of the paper.
    pub locked: Option<(Round, BlockId)>,
    /// validRound/validValue of the paper.
    pub valid: Option<(Round, BlockId)>,
    /// The last message signed.
    pub last_signed: Option<SignedMessage>,
    /// Votes to show again after a restart, since nobody else may still hold
    /// them (their holders may have crashed too, or be Byzantine and silent):
    /// - the prevotes of the polkas behind `locked` and `valid`: a lock that no
    ///   other node can verify refuses every other value while nobody accepts
    ///   ours, and the height stalls;
    /// - our own votes of this height: peers still in one of its rounds may be
    ///   waiting for +2/3 votes of that round that only ours can complete (ours
    ///   of `round` are sent again at once, the others when peers ask).
    pub votes: Vec<Vote>,
    /// The block of `valid`, so that after a restart we can propose it again
    /// (L16) rather than a fresh value that we ourselves, locked, would refuse.
    pub valid_block: Option<Arc<Block>>,
}

/// An input to [`crate::consensus::Consensus::handle`].
///
/// Contract of the runtime: proposals and votes are fed only after their
/// signatures have been verified (the runtime verifies in batches and scores the
/// peers that send bad ones).
#[derive(Clone, Debug)]
pub enum Input {
    /// Start `height` (the previous one is decided and applied). `last_block_time`
    /// is the time of the previous block; our votes are stamped later than it.
    StartHeight {
        /// The height to start.
        height: Height,
        /// Time of the block at `height - 1` (genesis time at height 1).
        last_block_time: Timestamp,
    },
    /// A signed proposal with the block it proposes.
    Proposal {
        /// The proposal.
        proposal: Proposal,
        /// The proposed block.
        block: Arc<Block>,
    },
    /// A signed vote.
    Vote(Vote),
    /// A scheduled timeout fired.
    Timeout(Timeout),
    /// The block we asked for with [`Output::RequestValue`].
    ProposeValue {
        /// Height asked for.
        height: Height,
        /// Round asked for.
        round: Round,
        /// The block to propose.
        block: Arc<Block>,
    },
    /// The answer to [`Output::ValidateValue`].
    ValueValidity {
        /// Height of the block.
        height: Height,
        /// The block checked.
        block_id: BlockId,
        /// Whether every transaction and the header check out.
        valid: bool,
    },
}

/// An effect for the runtime to carry out, in the order given.
#[derive(Clone, Debug)]
pub enum Output {
    /// Make this durable (fsync) BEFORE executing any later output: the broadcast
    /// that follows carries the signature this state guards.
    Persist(PersistedState),
    /// Send our proposal and its block to every peer.
    BroadcastProposal {
        /// The signed proposal.
        proposal: Proposal,
        /// The block.
        block: Arc<Block>,
    },
    /// Send our vote to every peer.
    BroadcastVote(Vote),
    /// Feed `timeout` back as [`Input::Timeout`] after `duration`.
    ScheduleTimeout {
        /// What to feed back.
        timeout: Timeout,
        /// After how long.
        duration: Duration,
    },
    /// We propose in (height, round): the runtime MUST eventually answer with
    /// [`Input::ProposeValue`] (or the round times out elsewhere).
    RequestValue {
        /// Height to propose at.
        height: Height,
        /// Round to propose in.
        round: Round,
    },
    /// Check a proposed block (transactions, header against our state): the
    /// runtime MUST answer with [`Input::ValueValidity`]. Until it does, we do not
    /// vote for the block.
    ValidateValue {
        /// Height of the block.
        height: Height,
        /// Round it was proposed in.
        round: Round,
        /// The block.
        block: Arc<Block>,
    },
    /// `block` is decided at `height` with `commit` as its certificate.
    Decide {
        /// The decided height.
        height: Height,
        /// The round of the decision.
        round: Round,
        /// The decided block.
        block: Arc<Block>,
        /// +2/3 precommits for it.
        commit: Commit,
    },
    /// A validator signed two conflicting votes.
    Evidence(DuplicateVote),
    /// We entered a new round (for logs and metrics).
    NewRound {
        /// Height.
        height: Height,
        /// The round entered.
        round: Round,
    },
}
