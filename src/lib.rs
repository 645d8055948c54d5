//! consort: a permissioned consortium blockchain node.
//!
//! Layers, lowest first: [`types`] (domain values), [`consensus`] (the pure
//! Tendermint state machine), and the runtime layers built on them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod consensus;
pub mod types;
