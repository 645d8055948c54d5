//! Catching up: snapshots of the application state that a joining node fetches
//! and checks chunk by chunk, and the state-sync client that restores them.

pub mod snapshot;
