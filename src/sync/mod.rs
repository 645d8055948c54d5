//! Catching up: snapshots of the application state that a joining node fetches
//! and checks chunk by chunk, the state-sync client that restores them, and
//! progress reporting.
//!
//! - [`snapshot`]: the manifest and chunk format, and their checks.
//! - [`snapshotter`]: taking snapshots in the background.
//! - [`state_sync`]: restoring the newest snapshot from peers.
//! - [`progress`]: bar, log lines and metrics.

pub mod progress;
pub mod snapshot;
pub mod snapshotter;
pub mod state_sync;
