//! The properties checked on every run, over correct nodes only: agreement,
//! validity (checked where decisions are recorded, in `world.rs`), no double
//! signing, persist before send. Liveness is measured in `world.rs`.

use std::collections::{BTreeMap, HashMap};

use consort::consensus::SignedMessage;
use consort::types::{BlockId, Height, Round};

/// What one signed message says, for comparing two in the same slot.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Content {
    block_id: Option<BlockId>,
    pol_round: Option<Round>,
}

/// The global log of a run.
#[derive(Default)]
pub struct Checks {
    /// First decision of each height: block and the node that decided it.
    pub decided: BTreeMap<u64, (BlockId, usize)>,
    /// Every message a correct validator signed, by (validator, height, round,
    /// step), with the node that signed it.
    signed: HashMap<(usize, u64, u32, u8), (Content, usize)>,
    /// Safety violations found.
    pub safety: Vec<String>,
    /// The liveness failure, if any.
    pub liveness: Option<String>,
}

impl Checks {
    /// Records that correct node `node` decided `id` at `height`. Returns true if
    /// it is the first decision of that height.
    pub fn decision(&mut self, node: usize, height: Height, id: BlockId, how: &str) -> bool {
        match self.decided.get(&height.0) {
            None => {
                self.decided.insert(height.0, (id, node));
                true
            }
            Some((other, first)) => {
                if *other != id {
                    self.safety.push(format!(
                        "agreement: n{node} {how} {} at height {height}, n{first} decided {}",
                        id.short(),
                        other.short()
                    ));
                }
                false
            }
        }
    }

    /// Records a message that correct node `node` (validator `validator`) signed;
    /// a different message in the same slot is double signing.
    pub fn signed(&mut self, node: usize, validator: usize, m: &SignedMessage) {
        let (h, r, step) = m.slot();
        let content = match m {
            SignedMessage::Proposal(p) => Content {
                block_id: Some(p.block_id),
                pol_round: p.pol_round,
            },
            SignedMessage::Vote(v) => Content {
                block_id: v.block_id,
                pol_round: None,
            },
        };
        let key = (validator, h.0, r.0, step);
        match self.signed.get(&key) {
            None => {
                self.signed.insert(key, (content, node));
            }
            Some((before, _)) if *before == content => {}
            Some((before, _)) => {
                let what = ["proposal", "prevote", "precommit"][step as usize];
                self.safety.push(format!(
                    "double signing: v{validator} (n{node}) signed {what} h{h} r{r} for {:?} \
                     after signing it for {:?}",
                    content, before
                ));
            }
        }
    }
}
