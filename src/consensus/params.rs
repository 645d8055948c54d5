//! Consensus parameters: who we are, what we agree on, and how long we wait.

use std::time::Duration;

use crate::types::{Keypair, ValidatorSet};

/// Timeouts of one step: `base + delta * round`, so that they grow with the round
/// until they exceed the real message delay after the network stabilizes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StepTimeout {
    /// Timeout in round 0.
    pub base: Duration,
    /// Added per round.
    pub delta: Duration,
}

impl StepTimeout {
    /// The timeout in `round`.
    pub fn at(&self, round: u32) -> Duration {
        self.base.saturating_add(self.delta.saturating_mul(round))
    }
}

/// Timeouts of the three steps.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Waiting for the proposal (covers receiving and checking the block).
    pub propose: StepTimeout,
    /// Waiting after +2/3 prevotes for anything.
    pub prevote: StepTimeout,
    /// Waiting after +2/3 precommits for anything.
    pub precommit: StepTimeout,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            propose: StepTimeout {
                base: Duration::from_millis(1000),
                delta: Duration::from_millis(500),
            },
            prevote: StepTimeout {
                base: Duration::from_millis(500),
                delta: Duration::from_millis(250),
            },
            precommit: StepTimeout {
                base: Duration::from_millis(500),
                delta: Duration::from_millis(250),
            },
        }
    }
}

/// Everything the state machine is built from.
#[derive(Clone, Debug)]
pub struct Params {
    /// The chain id, part of everything signed.
    pub chain_id: String,
    /// The fixed validator set.
    pub validators: ValidatorSet,
    /// Our signing key; `None` for a node that follows without voting. A key that is
    /// not in the set also only follows.
    pub key: Option<Keypair>,
    /// Step timeouts.
    pub timeouts: Timeouts,
}
