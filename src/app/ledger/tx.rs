//! Ledger transactions: what a client signs.

use bytes::Bytes;

use crate::types::{Canonical, Hash, Keypair, PublicKey, Signature, TypesError};

/// Domain tag of transaction sign bytes.
pub const TX_TAG: &str = "consort/tx/v1";
/// Largest encoded transaction.
pub const MAX_TX_BYTES: usize = 64 * 1024;
/// Longest record name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest record value.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Move funds to another account (created if new).
    Transfer {
        /// Recipient.
        to: PublicKey,
        /// Amount, at least 1.
        amount: u64,
    },
    /// Set a record in the sender's namespace.
    Put {
        /// Record name.
        name: String,
        /// Record value.
        value: Bytes,
    },
    /// Remove a record from the sender's namespace.
    Delete {
        /// Record name.
        name: String,
    },
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tx {
    /// The signing account.
    pub sender: PublicKey,
    /// The sender's nonce: its count of earlier transactions.
    pub nonce: u64,
    /// What to do.
    pub action: Action,
    /// Signature over [`Tx::sign_bytes`].
    pub signature: Signature,
}

/// Why a transaction is malformed (before looking at any state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxFormatError {
    /// Larger than [`MAX_TX_BYTES`].
    #[error("transaction is {size} bytes, at most {MAX_TX_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not a decodable transaction, or not in canonical form.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// The signature does not verify (wrong key, chain or content).
    #[error("bad signature")]
    BadSignature,
}

impl Action {
    /// Checks field limits.
    pub fn check(&self) -> Result<(), TxFormatError> {
        match self {
            Action::Transfer { amount, .. } if *amount == 0 => Err(TxFormatError::Malformed(
                "transfer amount must be at least 1".into(),
            )),
            Action::Put { name, value } => {
                check_name(name)?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(TxFormatError::Malformed(format!(
                        "record value is {} bytes, at most {MAX_VALUE_BYTES}",
                        value.len()
                    )));
                }
                Ok(())
            }
            Action::Delete { name } => check_name(name),
            _ => Ok(()),
        }
    }
}

fn check_name(name: &str) -> Result<(), TxFormatError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(TxFormatError::Malformed(format!(
            "record name must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Tx {
    /// Canonical bytes the sender signs.
    pub fn sign_bytes(chain_id: &str, sender: &PublicKey, nonce: u64, action: &Action) -> Vec<u8> {
        let mut c = Canonical::tagged(TX_TAG);
        c.str(chain_id).bytes(sender.as_bytes()).u64(nonce);
        match action {
            Action::Transfer { to, amount } => {
                c.u8(1).bytes(to.as_bytes()).u64(*amount);
            }
            Action::Put { name, value } => {
                c.u8(2).str(name).bytes(value);
            }
            Action::Delete { name } => {
                c.u8(3).str(name);
            }
        }
        c.finish()
    }

    /// Builds and signs a transaction.
    pub fn new_signed(key: &Keypair, chain_id: &str, nonce: u64, action: Action) -> Tx {
        let sender = key.public();
        let signature = key.sign(&Tx::sign_bytes(chain_id, &sender, nonce, &action));
        Tx {
            sender,
            nonce,
            action,
            signature,
        }
    }

    /// The bytes this transaction's signature covers on `chain_id`.
    pub fn to_sign_bytes(&self, chain_id: &str) -> Vec<u8> {
        Tx::sign_bytes(chain_id, &self.sender, self.nonce, &self.action)
    }

    /// Checks the signature.
    pub fn verify(&self, chain_id: &str) -> Result<(), TxFormatError> {
        self.sender
            .verify(&self.to_sign_bytes(chain_id), &self.signature)
            .map_err(|_: TypesError| TxFormatError::BadSignature)
    }

    /// The transaction's id: SHA-256 of its encoded bytes.
    pub fn hash_of(bytes: &[u8]) -> Hash {
        Hash::digest(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_chain_nonce_and_action() {
        let k = Keypair::from_seed([1; 32]);
        let to = Keypair::from_seed([2; 32]).public();
        let tx = Tx::new_signed(&k, "c", 3, Action::Transfer { to, amount: 5 });
        assert!(tx.verify("c").is_ok());
        assert_eq!(tx.verify("d"), Err(TxFormatError::BadSignature));
        let mut t = tx.clone();
        t.nonce = 4;
        assert!(t.verify("c").is_err());
        let mut t = tx.clone();
        t.action = Action::Transfer { to, amount: 6 };
        assert!(t.verify("c").is_err());
        let put = Action::Put {
            name: "a".into(),
            value: Bytes::from_static(b"b"),
        };
        let del = Action::Delete { name: "a".into() };
        assert_ne!(
            Tx::sign_bytes("c", &k.public(), 0, &put),
            Tx::sign_bytes("c", &k.public(), 0, &del)
        );
    }

    #[test]
    fn field_limits() {
        let to = Keypair::from_seed([2; 32]).public();
        assert!(Action::Transfer { to, amount: 0 }.check().is_err());
        assert!(
            Action::Put {
                name: String::new(),
                value: Bytes::new()
            }
            .check()
            .is_err()
        );
        assert!(
            Action::Put {
                name: "x".repeat(MAX_NAME_BYTES + 1),
                value: Bytes::new()
            }
            .check()
            .is_err()
        );
        assert!(
            Action::Put {
                name: "x".into(),
                value: Bytes::from(vec![0; MAX_VALUE_BYTES + 1])
            }
            .check()
            .is_err()
        );
        assert!(Action::Delete { name: "ok".into() }.check().is_ok());
    }
}
