//! Errors of the domain types.

/// Why a value is not a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypesError {
    /// A fixed-size field has the wrong length.
    #[error("{what} must be {expected} bytes, got {got}")]
    Length {
        /// The field.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// Bad hex text.
    #[error("invalid hex: {0}")]
    Hex(String),
    /// Not a usable ed25519 public key.
    #[error("invalid ed25519 public key (not a canonical point of large order)")]
    InvalidKey,
    /// A signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A validator set breaks a rule.
    #[error("invalid validator set: {0}")]
    InvalidValidatorSet(String),
    /// A block breaks a structural rule.
    #[error("invalid block: {0}")]
    InvalidBlock(String),
    /// Evidence that proves nothing.
    #[error("invalid evidence: {0}")]
    InvalidEvidence(String),
}
