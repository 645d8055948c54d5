//! Transaction results and block outcomes on the wire and on disk.

use prost::Message;

use super::{CodecError, Wire};
use crate::app::{Event, TxResult};
use crate::pb;

impl Wire for TxResult {
    type Proto = pb::TxResult;

    fn to_proto(&self) -> pb::TxResult {
        pb::TxResult {
            code: self.code,
            log: self.log.clone(),
            events: self
                .events
                .iter()
                .map(|e| pb::Event {
                    kind: e.kind.clone(),
                    attributes: e
                        .attributes
                        .iter()
                        .map(|(k, v)| pb::Attribute {
                            key: k.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn from_proto(p: pb::TxResult) -> Result<TxResult, CodecError> {
        Ok(TxResult {
            code: p.code,
            log: p.log,
            events: p
                .events
                .into_iter()
                .map(|e| Event {
                    kind: e.kind,
                    attributes: e.attributes.into_iter().map(|a| (a.key, a.value)).collect(),
                })
                .collect(),
        })
    }
}

/// Encodes the results and app delta stored with a block.
pub fn encode_outcome(results: &[TxResult], app_delta: &[u8]) -> Vec<u8> {
    pb::BlockOutcome {
        results: results.iter().map(Wire::to_proto).collect(),
        app_delta: app_delta.to_vec().into(),
    }
    .encode_to_vec()
}

/// Decodes [`encode_outcome`]'s bytes.
pub fn decode_outcome(bytes: &[u8]) -> Result<(Vec<TxResult>, Vec<u8>), CodecError> {
    let p = pb::BlockOutcome::decode(bytes)?;
    let results = p
        .results
        .into_iter()
        .map(TxResult::from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((results, p.app_delta.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_round_trip() {
        let r = TxResult {
            code: 0,
            log: "ok".into(),
            events: vec![Event {
                kind: "transfer".into(),
                attributes: vec![("amount".into(), "5".into())],
            }],
        };
        let bytes = encode_outcome(std::slice::from_ref(&r), b"delta");
        assert_eq!(
            decode_outcome(&bytes).unwrap(),
            (vec![r], b"delta".to_vec())
        );
        assert!(decode_outcome(&[0xff]).is_err());
    }
}
