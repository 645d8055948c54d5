//! How ledger data maps to state entries.

use crate::types::PublicKey;

/// An account: balance and next nonce.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Funds.
    pub balance: u64,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
}

impl Account {
    /// 16 bytes: balance then nonce, big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.balance.to_be_bytes());
        v.extend_from_slice(&self.nonce.to_be_bytes());
        v
    }

    /// Reads [`Account::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Option<Account> {
        if b.len() != 16 {
            return None;
        }
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[..8]);
        let balance = u64::from_be_bytes(x);
        x.copy_from_slice(&b[8..]);
        Some(Account {
            balance,
            nonce: u64::from_be_bytes(x),
        })
    }
}

/// State key of an account.
pub fn account_key(owner: &PublicKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(37);
    k.extend_from_slice(b"acct/");
    k.extend_from_slice(owner.as_bytes());
    k
}

/// State key of a record in `owner`'s namespace.
pub fn record_key(owner: &PublicKey, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(37 + name.len());
    k.extend_from_slice(b"rec/");
    k.extend_from_slice(owner.as_bytes());
    k.push(b'/');
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Keypair;

    #[test]
    fn keys_are_distinct_and_accounts_round_trip() {
        let a = Keypair::from_seed([1; 32]).public();
        let b = Keypair::from_seed([2; 32]).public();
        assert_ne!(account_key(&a), account_key(&b));
        assert_ne!(record_key(&a, "x"), record_key(&b, "x"));
        assert_ne!(record_key(&a, "x"), record_key(&a, "y"));
        assert!(!record_key(&a, "").starts_with(&account_key(&a)));
        let acc = Account {
            balance: 7,
            nonce: 3,
        };
        assert_eq!(Account::decode(&acc.encode()), Some(acc));
        assert_eq!(Account::decode(&[0; 15]), None);
    }
}
