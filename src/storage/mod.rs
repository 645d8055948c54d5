//! Everything the node keeps on disk, behind traits so that the engine can change.
//!
//! - `traits`: the contract ([`BlockStore`], [`WalStore`], [`MetaStore`]).
//! - [`SledStore`] (`sled_store`): blocks, WAL and metadata in one sled database;
//!   [`MemStore`] (`mem_store`): the same rules in memory, for tests.
//! - [`SigningStateFile`] (`signing_state`): what the validator last signed, in
//!   its own file, fsynced before a signature leaves the node.
//! - `encoding`: the bytes written (keys, records, checksummed frames).
//! - [`measure_fsync_latency`] (`fsync_latency`): the disk's fsync floor.
//!
//! # Durability
//!
//! | write | durable when it returns | how |
//! |---|---|---|
//! | [`BlockStore::append`] | yes | one record (block, commit, app delta) in the `blocks` tree, then a flush (fsync) |
//! | [`BlockStore::append_deferred`] | no | the same record; durable with the next flush (catch-up batches its fsyncs) |
//! | [`BlockStore::prune_below`] | yes | batched removes, then a flush |
//! | [`MetaStore::meta_put`] | yes | one insert, then a flush |
//! | [`WalStore::wal_append`] | no | one insert; durable with the next flush of the store |
//! | [`SigningStateFile::save`] | yes | temporary file, fsync, rename, directory fsync |
//!
//! A sled flush makes every earlier write of every tree durable, so WAL entries
//! become durable at the latest with the block that ends their height.

mod encoding;
mod engine;
mod error;
mod evidence;
mod fsync_latency;
mod kv_store;
mod mem_store;
mod signing_state;
mod sled_store;
mod snapshots;
pub mod state;
pub mod traits;
mod tx_index;

#[cfg(test)]
mod tests;

pub use error::StorageError;
pub use evidence::{CommittedEvidence, EvidenceStore};
pub use fsync_latency::{FsyncLatency, measure_fsync_latency};
pub use mem_store::MemStore;
pub use signing_state::SigningStateFile;
pub use sled_store::{SledOptions, SledStore};
pub use snapshots::SnapshotStore;
pub use state::StateBackend;
pub use traits::{BlockStore, MetaStore, StoredBlock, WalEntry, WalStore};
pub use tx_index::TxIndexStore;
