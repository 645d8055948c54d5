//! Domain types shared by every layer: heights and rounds, hashes, keys and
//! signatures, blocks, votes, proposals, commits, evidence and the validator set,
//! with the canonical bytes that are hashed and signed.
//!
//! Values of these types are valid by construction where it matters (a
//! [`PublicKey`] is a usable key, a [`ValidatorSet`] has no duplicates and bounded
//! power); protobuf messages are converted into them at the edges (`codec`).

mod block;
mod canonical;
mod commit;
mod crypto;
mod error;
mod evidence;
mod hash;
mod height;
pub mod merkle;
mod validator;
mod vote;

pub use block::{Block, Header};
pub use canonical::Canonical;
pub use commit::{Commit, CommitError, CommitSig, verify_commits};
pub use crypto::{Keypair, PublicKey, Signature, SignedItem, verify_batch};
pub use error::TypesError;
pub use evidence::{DuplicateVote, Evidence};
pub use hash::{BlockId, Hash};
pub use height::{Height, Round, Timestamp};
pub use validator::{MAX_TOTAL_POWER, ProposerSchedule, Validator, ValidatorSet};
pub use vote::{PROPOSAL_TAG, Proposal, VOTE_TAG, Vote, VoteType};
