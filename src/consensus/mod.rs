//! The consensus core: a pure Tendermint state machine.
//!
//! Nothing under this module performs I/O, reads a clock or draws randomness. The
//! runtime (`node/`) and the simulator (`tests/simulation.rs`) feed it
//! [`Input`]s with the current time and carry out the [`Output`]s it returns, in
//! order; [`Output::Persist`] must be durable before any later output is carried
//! out, which is what keeps a validator from double-signing across a crash.
//!
//! - [`state_machine`]: the algorithm, with the paper's line numbers.
//! - [`vote_keeper`]: vote tallies per round and equivocation detection.
//! - [`io`]: inputs, outputs, steps, timeouts and the persisted signing state.
//! - [`params`]: chain id, validator set, our key, timeouts.

pub mod io;
pub mod params;
pub mod state_machine;
pub mod vote_keeper;

#[cfg(test)]
mod tests;

pub use io::{Input, Output, PersistedState, SignedMessage, Step, Timeout, TimeoutKind};
pub use params::{Params, StepTimeout, Timeouts};
pub use state_machine::{Consensus, FUTURE_HEIGHT_ROUNDS, MAX_ROUND_LEAD};
pub use vote_keeper::{AddVote, VoteKeeper, VoteTally};
