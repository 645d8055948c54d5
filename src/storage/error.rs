//! Errors of the storage layer.

use std::io;
use std::path::PathBuf;

use crate::types::Height;

/// Why a storage operation failed.
///
/// Every variant says where: the file, the key or the height. Any of them on a
/// write means the write may not be durable; the runtime treats that as fatal.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "fsync", "rename", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: io::Error,
    },
    /// The sled database failed.
    #[error("sled {op} in {}: {source}", path.display())]
    Sled {
        /// What was being done ("open", "get", "insert", "flush", ...).
        op: &'static str,
        /// Directory of the database.
        path: PathBuf,
        /// sled's error (sled 1.0 reports I/O errors).
        #[source]
        source: io::Error,
    },
    /// The database could not be opened: sled panicked, or did not finish in the
    /// time allowed (sled 1.0 panics on some damaged files instead of failing).
    #[error("cannot open the database in {}: {reason}", path.display())]
    OpenFailed {
        /// Directory of the database.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// Stored bytes are not what was written: a checksum, a length or a decoding
    /// check failed, or a record contradicts its key.
    #[error("corrupt {what} at {key}: {reason}")]
    Corrupt {
        /// What kind of record ("block record", "signing state file", ...).
        what: &'static str,
        /// Where: a height, a key or a path.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An append that is not at the next height.
    #[error("block at height {got} is not the next one, expected height {expected}")]
    NotNext {
        /// The height that may be appended (latest + 1).
        expected: Height,
        /// The height offered.
        got: Height,
    },
    /// A write whose parts do not belong together (a commit for another block, a
    /// WAL entry of another height, a block at height 0). A bug in the caller.
    #[error("refused write at height {height}: {reason}")]
    Mismatch {
        /// Height of the write.
        height: Height,
        /// What does not match.
        reason: String,
    },
}

impl StorageError {
    /// A [`StorageError::Corrupt`] at `key`.
    pub(crate) fn corrupt(
        what: &'static str,
        key: impl std::fmt::Display,
        reason: impl std::fmt::Display,
    ) -> StorageError {
        StorageError::Corrupt {
            what,
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A [`StorageError::Io`] on `path`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> StorageError {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
