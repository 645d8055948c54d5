//! The storage contract the runtime is written against: blocks with their commits,
//! the consensus write-ahead log, and small node metadata.

use crate::types::{Block, BlockId, Commit, Height, Proposal, Vote};

use super::StorageError;

/// A decided block as stored: the block, the commit that decided it, and an opaque
/// application state delta (the app encodes its own changes; empty for now).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    /// The decided block.
    pub block: Block,
    /// The +2/3 precommits that decided it.
    pub commit: Commit,
    /// The application's changes of this block, in the application's encoding.
    pub app_delta: Vec<u8>,
}

/// Blocks and commits, append-only at the tip, prunable at the base.
///
/// Heights are contiguous: every height from [`BlockStore::base_height`] to
/// [`BlockStore::latest_height`] is stored.
pub trait BlockStore: Send + Sync + 'static {
    /// Appends the block at latest_height()+1 with its commit and app delta in ONE
    /// atomic write, durable (fsync) before returning. Refuses a height that is not
    /// latest+1 (StorageError::NotNext { expected, got }) -- except the first block
    /// written into an empty store may be at any height (a node restored from a
    /// snapshot starts its history there).
    ///
    /// Also refuses ([`StorageError::Mismatch`]) a block at height 0 and a commit
    /// that is not for this block (other height or block id). The commit's
    /// signatures are not checked here.
    fn append(&self, block: &Block, commit: &Commit, app_delta: &[u8]) -> Result<(), StorageError>;

    /// Like [`BlockStore::append`], with the same checks and the same atomic write,
    /// but durable only with the next [`BlockStore::sync_blocks`] (or the next
    /// durable append). For blocks fetched from peers during catch-up: each carries
    /// a commit signed by +2/3, so a crash that loses it loses nothing the network
    /// does not hold, and one fsync per batch instead of one per block is what lets
    /// a node that is far behind apply thousands of blocks a second.
    fn append_deferred(
        &self,
        block: &Block,
        commit: &Commit,
        app_delta: &[u8],
    ) -> Result<(), StorageError>;

    /// Makes every block appended so far durable (fsync).
    fn sync_blocks(&self) -> Result<(), StorageError>;

    /// The block at `height`, if stored.
    fn block(&self, height: Height) -> Result<Option<Block>, StorageError>;

    /// The commit of the block at `height`, if stored.
    fn commit(&self, height: Height) -> Result<Option<Commit>, StorageError>;

    /// Block, commit and app delta at `height`, if stored.
    fn stored(&self, height: Height) -> Result<Option<StoredBlock>, StorageError>;

    /// Raw protobuf bytes of the block, to serve peers without re-encoding.
    fn block_bytes(&self, height: Height) -> Result<Option<Vec<u8>>, StorageError>;

    /// Id of the block at `height`, without decoding the block.
    fn block_id(&self, height: Height) -> Result<Option<BlockId>, StorageError>;

    /// Highest stored height, Height(0) when empty.
    fn latest_height(&self) -> Height;

    /// Lowest stored height, Height(0) when empty.
    fn base_height(&self) -> Height;

    /// Deletes blocks below `height` (never the latest); returns how many.
    fn prune_below(&self, height: Height) -> Result<u64, StorageError>;
}

/// One entry of the consensus write-ahead log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEntry {
    /// A signed proposal with the block it proposes.
    Proposal {
        /// The proposal.
        proposal: Proposal,
        /// The proposed block.
        block: Block,
    },
    /// A signed vote.
    Vote(Vote),
}

impl WalEntry {
    /// The height of the proposal or vote.
    pub fn height(&self) -> Height {
        match self {
            WalEntry::Proposal { proposal, .. } => proposal.height,
            WalEntry::Vote(v) => v.height,
        }
    }
}

/// The consensus write-ahead log: the proposals (with blocks) and votes received or
/// sent at the current height, replayed into the core after a restart. Appends need
/// not be fsynced (the signing state below is what safety rests on), but a torn or
/// truncated tail must be detected and dropped on read, never returned as garbage and
/// never a panic.
pub trait WalStore: Send + Sync + 'static {
    /// Logs `entry` under `height`, after the entries already logged there. The
    /// entry's own height must be `height` ([`StorageError::Mismatch`] otherwise).
    /// Not fsynced: it becomes durable with the next durable write of the store.
    fn wal_append(&self, height: Height, entry: &WalEntry) -> Result<(), StorageError>;

    /// The entries logged under `height`, in append order. Records that fail their
    /// checksum or do not decode are dropped (and logged), never returned.
    fn wal_entries(&self, height: Height) -> Result<Vec<WalEntry>, StorageError>;

    /// Drops every entry of heights below `height`.
    fn wal_clear_below(&self, height: Height) -> Result<(), StorageError>;
}

/// Small node metadata (key/value), e.g. the state-sync progress later on.
pub trait MetaStore: Send + Sync + 'static {
    /// The value stored under `key`, if any.
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Stores `value` under `key`, replacing any previous value; durable on return.
    fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StorageError>;
}
