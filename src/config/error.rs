//! Configuration errors: each names the file and, where it can, the field.

use std::path::PathBuf;

/// Why a configuration, genesis or key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not parse (the message names the field and position).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A field holds a value that is not allowed.
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, dotted (`p2p.listen`).
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// An invalid field.
    pub fn invalid(
        path: &std::path::Path,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> ConfigError {
        ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
