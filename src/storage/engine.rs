//! The ordered byte maps the stores are built on, so that the store logic (heights,
//! refusals, pruning, WAL framing) is written once for sled and for memory.

use super::StorageError;

/// The trees (key spaces) of a store.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum TreeId {
    /// Decided blocks: big-endian height -> block record.
    Blocks,
    /// Consensus WAL: big-endian (height, sequence) -> framed entry.
    Wal,
    /// Node metadata: key -> value.
    Meta,
    /// Application state: key hash -> entry; the empty key holds the applied height.
    State,
    /// Transaction index: hash -> (height, index); the empty key holds the
    /// indexed height.
    TxIndex,
    /// Snapshots: (height, 0) -> manifest; (height, 1, index) -> chunk.
    Snapshots,
    /// Committed evidence: by hash and by (height, position); the empty key
    /// holds the indexed height.
    Evidence,
}

impl TreeId {
    /// Every tree, in a fixed order.
    pub(super) const ALL: [TreeId; 7] = [
        TreeId::Blocks,
        TreeId::Wal,
        TreeId::Meta,
        TreeId::State,
        TreeId::TxIndex,
        TreeId::Snapshots,
        TreeId::Evidence,
    ];

    /// Stable name on disk.
    pub(super) fn name(self) -> &'static str {
        match self {
            TreeId::Blocks => "blocks",
            TreeId::Wal => "wal",
            TreeId::Meta => "meta",
            TreeId::State => "state",
            TreeId::TxIndex => "txindex",
            TreeId::Snapshots => "snapshots",
            TreeId::Evidence => "evidence",
        }
    }

    /// Position in [`TreeId::ALL`].
    pub(super) fn index(self) -> usize {
        match self {
            TreeId::Blocks => 0,
            TreeId::Wal => 1,
            TreeId::Meta => 2,
            TreeId::State => 3,
            TreeId::TxIndex => 4,
            TreeId::Snapshots => 5,
            TreeId::Evidence => 6,
        }
    }
}

/// A key and its value.
pub(super) type Entry = (Vec<u8>, Vec<u8>);

/// The smallest and the largest key of a tree.
pub(super) type FirstLast = (Vec<u8>, Vec<u8>);

/// Ordered maps of bytes to bytes, one per [`TreeId`].
///
/// Each single call is atomic. Nothing is durable until [`Engine::flush`]
/// returns, which makes every earlier write of every tree durable.
pub(super) trait Engine: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Sets `key` to `value`.
    fn insert(&self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), StorageError>;

    /// Removes `keys`, all or none.
    fn remove_all(&self, tree: TreeId, keys: &[Vec<u8>]) -> Result<(), StorageError>;

    /// Sets (`Some`) or removes (`None`) every key, all or none.
    fn apply(&self, tree: TreeId, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), StorageError>;

    /// At most `limit` entries with `start <= key < end`, in key order.
    fn scan_limit(
        &self,
        tree: TreeId,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError>;

    /// Entries with `start <= key < end`, in key order.
    fn scan(&self, tree: TreeId, start: &[u8], end: &[u8]) -> Result<Vec<Entry>, StorageError>;

    /// Keys with `start <= key < end`, in key order.
    fn keys(&self, tree: TreeId, start: &[u8], end: &[u8]) -> Result<Vec<Vec<u8>>, StorageError>;

    /// The smallest and the largest key of `tree`, if it is not empty.
    fn bounds(&self, tree: TreeId) -> Result<Option<FirstLast>, StorageError>;

    /// Makes every write made before the call durable (fsync).
    fn flush(&self) -> Result<(), StorageError>;
}
