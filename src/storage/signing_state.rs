//! The signing state in its own small file, outside sled: what the validator last
//! signed and its lock, durable before any signature leaves the node.
//!
//! File layout: an 8-byte magic (`CSIGST01`), then one checksummed frame (payload
//! length and CRC-32, little-endian) holding a `SigningState` protobuf.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::codec::Wire;
use crate::consensus::PersistedState;

use super::StorageError;
use super::encoding::{frame, unframe};

/// First bytes of a signing-state file (format version 1).
const MAGIC: &[u8; 8] = b"CSIGST01";

const WHAT: &str = "signing state file";

/// The signing state (consensus::PersistedState) in its OWN small file, outside sled:
/// written to a temporary file, fsynced, renamed over the old one, directory fsynced.
/// Carries a checksum; a corrupt or unreadable file is an ERROR (the node must refuse
/// to start rather than risk double-signing), a missing file is Ok(None).
#[derive(Debug)]
pub struct SigningStateFile {
    path: PathBuf,
    /// Two saves must not write the temporary file at the same time.
    save_lock: Mutex<()>,
}

impl SigningStateFile {
    /// The signing state kept at `path` (nothing is read or created yet).
    pub fn new(path: PathBuf) -> SigningStateFile {
        SigningStateFile {
            path,
            save_lock: Mutex::new(()),
        }
    }

    /// Where the state is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file a save writes before renaming it over [`Self::path`].
    fn tmp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
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
        let state = PersistedState::decode(payload).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(state))
    }

    /// Replaces the state on disk, durably: when this returns Ok, a crash at any
    /// later point leaves exactly `state` in the file; when it returns an error,
    /// the file holds either the previous state or `state`, and the caller must
    /// not send the signature this state guards.
    pub fn save(&self, state: &PersistedState) -> Result<(), StorageError> {
        let _guard = self
            .save_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut contents = Vec::with_capacity(256);
        contents.extend_from_slice(MAGIC);
        contents.extend_from_slice(&frame(&state.encode()));

        let tmp = self.tmp_path();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| StorageError::io("create", &tmp, e))?;
        file.write_all(&contents)
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| StorageError::io("fsync", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| StorageError::io("rename", &self.path, e))?;
        // The rename is durable only once the directory entry is.
        let dir = self.dir();
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io("fsync directory", &dir, e))
    }
}
