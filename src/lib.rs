//! consort: a permissioned consortium blockchain node.
//!
//! Layers, lowest first: [`types`] (domain values), [`consensus`] (the pure
//! Tendermint state machine), and the runtime layers built on them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Inputs, outputs and messages are short-lived values moved through channels;
// boxing their large variants would only add allocations on the hot path.
#![allow(clippy::large_enum_variant)]

pub mod app;
pub mod bench;
pub mod client;
pub mod codec;
pub mod config;
pub mod consensus;
pub mod faults;
pub mod mempool;
pub mod metrics;
pub mod net;
pub mod node;
pub mod pb;
pub mod pki;
pub mod rpc;
pub mod storage;
pub mod sync;
pub mod testnet;
pub mod types;
