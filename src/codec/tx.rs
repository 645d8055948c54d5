//! Ledger transactions on the wire.

use bytes::Bytes;
use prost::Message;

use super::{CodecError, Wire, key_field};
use crate::app::ledger::{Action, MAX_TX_BYTES, Tx, TxFormatError};
use crate::pb;
use crate::types::Signature;

impl Wire for Tx {
    type Proto = pb::Tx;

    fn to_proto(&self) -> pb::Tx {
        let action = match &self.action {
            Action::Transfer { to, amount } => pb::tx::Action::Transfer(pb::Transfer {
                to: Bytes::copy_from_slice(to.as_bytes()),
                amount: *amount,
            }),
            Action::Put { name, value } => pb::tx::Action::Put(pb::Put {
                name: name.clone(),
                value: value.clone(),
            }),
            Action::Delete { name } => pb::tx::Action::Delete(pb::Delete { name: name.clone() }),
        };
        pb::Tx {
            sender: Bytes::copy_from_slice(self.sender.as_bytes()),
            nonce: self.nonce,
            action: Some(action),
            signature: Bytes::copy_from_slice(self.signature.as_bytes()),
        }
    }

    fn from_proto(p: pb::Tx) -> Result<Tx, CodecError> {
        let action = match p.action.ok_or(CodecError::Missing("tx.action"))? {
            pb::tx::Action::Transfer(t) => Action::Transfer {
                to: key_field("tx.transfer.to", &t.to)?,
                amount: t.amount,
            },
            pb::tx::Action::Put(x) => Action::Put {
                name: x.name,
                value: x.value,
            },
            pb::tx::Action::Delete(x) => Action::Delete { name: x.name },
        };
        action.check().map_err(|e| CodecError::Invalid {
            field: "tx.action",
            reason: e.to_string(),
        })?;
        Ok(Tx {
            sender: key_field("tx.sender", &p.sender)?,
            nonce: p.nonce,
            action,
            signature: Signature::from_slice(&p.signature).map_err(|e| CodecError::Invalid {
                field: "tx.signature",
                reason: e.to_string(),
            })?,
        })
    }
}

/// Decodes a transaction as it appears in a block or a submission: bounded in
/// size, and only in its canonical encoding (so that one signed transaction has
/// exactly one hash). The signature is not checked here.
pub fn decode_tx(bytes: &[u8]) -> Result<Tx, TxFormatError> {
    if bytes.len() > MAX_TX_BYTES {
        return Err(TxFormatError::TooLarge { size: bytes.len() });
    }
    let p = pb::Tx::decode(bytes).map_err(|e| TxFormatError::Malformed(e.to_string()))?;
    let canonical = p.encode_to_vec();
    let tx = Tx::from_proto(p).map_err(|e| TxFormatError::Malformed(e.to_string()))?;
    if canonical != bytes {
        return Err(TxFormatError::Malformed("not in canonical encoding".into()));
    }
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Keypair;

    #[test]
    fn round_trip_and_canonical_only() {
        let k = Keypair::from_seed([1; 32]);
        let tx = Tx::new_signed(
            &k,
            "c",
            0,
            Action::Put {
                name: "n".into(),
                value: Bytes::from_static(b"v"),
            },
        );
        let bytes = tx.encode();
        assert_eq!(decode_tx(&bytes).unwrap(), tx);
        // The same message with a redundant repeated field is another encoding.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0x10, 0x00]); // nonce = 0 again
        assert!(matches!(
            decode_tx(&padded),
            Err(TxFormatError::Malformed(_))
        ));
        assert!(matches!(
            decode_tx(&vec![0u8; MAX_TX_BYTES + 1]),
            Err(TxFormatError::TooLarge { .. })
        ));
        assert!(decode_tx(&[0xff, 0x01]).is_err());
        let mut p = tx.to_proto();
        p.action = None;
        assert!(decode_tx(&p.encode_to_vec()).is_err());
    }
}
