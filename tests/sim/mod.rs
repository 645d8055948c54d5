//! A deterministic simulator of the consensus core: see `tests/simulation.rs`.

pub mod byzantine;
pub mod chain;
pub mod checks;
pub mod network;
pub mod rng;
pub mod scenario;
pub mod trace;
pub mod world;

pub use world::{Outcome, Sim};
