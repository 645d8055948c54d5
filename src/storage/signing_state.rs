//! The signing state in its own small file, outside sled: what the validator last
//! signed and its lock, durable before any signature leaves the node.
//!
//! File layout: an 8-byte magic (`CSIGST01`), then one checksummed frame (payload
//! length and CRC-32, little-endian) holding a `SigningState` protobuf.
//!
//! The block of the valid value (which a restarted validator proposes again) can
//! be large; it goes to a second file (`<name>.valid-block`, magic `CVALBK01`),
//! written the same way but only when the valid value changes, and always before
//! the state that refers to it. A missing or stale block file costs only the
//! re-proposal (the validator then asks for a fresh value), never safety.

use parking_lot::Mutex;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::codec::Wire;
use crate::consensus::PersistedState;

use super::StorageError;
use super::encoding::{frame, unframe};

/// First bytes of a signing-state file (format version 1).
const MAGIC: &[u8; 8] = b"CSIGST01";

const WHAT: &str = "signing state file";

/// First bytes of the valid-block file.
const BLOCK_MAGIC: &[u8; 8] = b"CVALBK01";

/// The signing state (consensus::PersistedState) in its OWN small file, outside sled:
/// written to a temporary file, fsynced, renamed over the old one, directory fsynced.
/// Carries a checksum; a corrupt or unreadable file is an ERROR (the node must refuse
/// to start rather than risk double-signing), a missing file is Ok(None).
#[derive(Debug)]
pub struct SigningStateFile {
    path: PathBuf,
    /// Two saves must not write the temporary file at the same time. Holds the
    /// id of the block last written to the valid-block file.
    save_lock: Mutex<Option<crate::types::BlockId>>,
}

impl SigningStateFile {
    /// The signing state kept at `path` (nothing is read or created yet).
    pub fn new(path: PathBuf) -> SigningStateFile {
        SigningStateFile {
            path,
            save_lock: Mutex::new(None),
        }
    }

    /// Where the state is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file holding the block of the valid value.
    fn block_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".valid-block");
        self.path.with_file_name(name)
    }

    /// The directory holding the file, whose entry the rename changes.
    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Reads the state: `Ok(None)` if there is no file (a validator that never
    /// signed), an error if it cannot be read or is not intact. A temporary file
    /// left by a crash during a save is ignored: the rename had not happened, so
    /// the previous state is the one in force.
    pub fn load(&self) -> Result<Option<PersistedState>, StorageError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("read", &self.path, e)),
        };
        let corrupt = |reason: String| StorageError::corrupt(WHAT, self.path.display(), reason);
        let Some(framed) = bytes.strip_prefix(MAGIC) else {
            return Err(corrupt(format!(
                "does not start with {:?} ({} bytes)",
                String::from_utf8_lossy(MAGIC),
                bytes.len()
            )));
        };
        let payload = unframe(framed).map_err(corrupt)?;
        let mut state = PersistedState::decode(payload).map_err(|e| corrupt(e.to_string()))?;
        if let Some((_, id)) = state.valid {
            state.valid_block = self.load_block(&id);
        }
        Ok(Some(state))
    }

    /// The block of the valid value, if its file holds that very block.
    fn load_block(
        &self,
        id: &crate::types::BlockId,
    ) -> Option<std::sync::Arc<crate::types::Block>> {
        let path = self.block_path();
        let bytes = fs::read(&path).ok()?;
        let block = bytes
            .strip_prefix(BLOCK_MAGIC)
            .and_then(|framed| unframe(framed).ok())
            .and_then(|payload| crate::types::Block::decode(payload).ok());
        match block {
            Some(b) if b.id() == *id => Some(std::sync::Arc::new(b)),
            _ => {
                tracing::warn!(path = %path.display(), "the valid block is missing or stale; it will not be proposed again");
                None
            }
        }
    }

    /// Replaces the state on disk, durably: when this returns Ok, a crash at any
    /// later point leaves exactly `state` in the file; when it returns an error,
    /// the file holds either the previous state or `state`, and the caller must
    /// not send the signature this state guards.
    pub fn save(&self, state: &PersistedState) -> Result<(), StorageError> {
        let mut last_block = self.save_lock.lock();
        // The block the state refers to goes first, and only when it changed.
        if let Some(block) = &state.valid_block {
            let id = block.id();
            if *last_block != Some(id) {
                let mut contents = Vec::with_capacity(1024);
                contents.extend_from_slice(BLOCK_MAGIC);
                contents.extend_from_slice(&frame(&block.encode()));
                self.write_atomically(&self.block_path(), &contents)?;
                *last_block = Some(id);
            }
        }
        let mut contents = Vec::with_capacity(256);
        contents.extend_from_slice(MAGIC);
        contents.extend_from_slice(&frame(&state.encode()));
        self.write_atomically(&self.path, &contents)
    }

    /// Writes `contents` to a temporary file, fsyncs it, renames it over `path`
    /// and fsyncs the directory.
    fn write_atomically(&self, path: &Path, contents: &[u8]) -> Result<(), StorageError> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let tmp = path.with_file_name(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| StorageError::io("create", &tmp, e))?;
        file.write_all(contents)
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| StorageError::io("fsync", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| StorageError::io("rename", path, e))?;
        // The rename is durable only once the directory entry is.
        let dir = self.dir();
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io("fsync directory", &dir, e))
    }
}
