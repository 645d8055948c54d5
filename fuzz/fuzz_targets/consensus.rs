//! The consensus core of validator 0 of four, fed an arbitrary sequence of
//! inputs: votes and proposals signed by the three others (who may equivocate
//! freely, beyond what BFT tolerates), replays of our own votes, timeouts,
//! validity answers, values to propose, new heights, and crashes (also in the
//! middle of a batch of outputs) followed by a restart from the last durable
//! signing state. Whatever the others do, the node:
//!
//! - never panics;
//! - never signs two different votes (or proposals) for one height, round and
//!   type, across crashes;
//! - broadcasts a freshly signed message only after a persist that carries it;
//! - decides at most one block per height, each with a commit that verifies;
//! - reports only evidence that verifies.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use consort::consensus::{
    Consensus, Input, Output, Params, PersistedState, SignedMessage, Timeout, TimeoutKind, Timeouts,
};
use consort::types::{
    Block, BlockId, Height, Keypair, Proposal, Round, Timestamp, ValidatorSet, Vote, VoteType,
};
use consort_fuzz::{Bytes, CHAIN, block, keys, validator_set};
use libfuzzer_sys::fuzz_target;

/// Inputs per run, so one run stays short.
const MAX_OPS: usize = 256;

/// (height, round, slot: 0 proposal, 1 prevote, 2 precommit).
type Slot = (Height, Round, u8);

struct World {
    set: ValidatorSet,
    keys: Vec<Keypair>,
    node: Consensus,
    now: Timestamp,
    /// What we signed, per slot, with the batch number and output index it came
    /// from (a crash during a persist takes back what that persist carried).
    signed: HashMap<Slot, (BlockId2, usize, usize)>,
    /// Our votes seen on the wire, to replay to ourselves (with batch and index).
    ours: Vec<(Vote, usize, usize)>,
    /// Decided blocks with their time (and batch and index).
    decided: HashMap<Height, (BlockId, Timestamp, usize, usize)>,
    /// Durable signing state: (batch, output index, state).
    durable: Option<(usize, usize, PersistedState)>,
    /// The persist before the latest one, for a crash during the latest.
    durable_before: Option<(usize, usize, PersistedState)>,
    request: Option<(Height, Round)>,
    batch: usize,
}

/// A signed value: a block id or nil.
type BlockId2 = Option<BlockId>;

fn params(set: &ValidatorSet, me: &Keypair) -> Params {
    Params {
        chain_id: CHAIN.into(),
        validators: set.clone(),
        key: Some(me.clone()),
        timeouts: Timeouts::default(),
    }
}

fn slot_and_value(m: &SignedMessage) -> (Slot, BlockId2) {
    match m {
        SignedMessage::Proposal(p) => (m.slot(), Some(p.block_id)),
        SignedMessage::Vote(v) => (m.slot(), v.block_id),
    }
}

impl World {
    fn new() -> World {
        let set = validator_set();
        let keys = keys();
        let node = Consensus::new(params(&set, &keys[0]), None);
        World {
            set,
            keys,
            node,
            now: Timestamp(1_000),
            signed: HashMap::new(),
            ours: Vec::new(),
            decided: HashMap::new(),
            durable: None,
            durable_before: None,
            request: None,
            batch: 0,
        }
    }

    fn me(&self) -> &Keypair {
        &self.keys[0]
    }

    fn next_height(&self) -> Height {
        Height(self.decided.keys().map(|h| h.0).max().unwrap_or(0) + 1)
    }

    fn last_block_time(&self) -> Timestamp {
        self.decided
            .iter()
            .max_by_key(|(h, _)| **h)
            .map_or(Timestamp(0), |(_, (_, t, _, _))| *t)
    }

    fn record_signed(&mut self, m: &SignedMessage, index: usize) {
        let (slot, value) = slot_and_value(m);
        match self.signed.get(&slot) {
            Some((v, _, _)) => assert_eq!(
                *v, value,
                "double sign at {slot:?}: {v:?} and then {value:?}"
            ),
            None => {
                self.signed.insert(slot, (value, self.batch, index));
            }
        }
    }

    fn feed(&mut self, input: Input) {
        self.batch += 1;
        let out = self.node.handle(self.now, input);
        // Messages persisted so far in this batch: a broadcast must follow one.
        let mut persisted: Vec<SignedMessage> = Vec::new();
        for (i, o) in out.into_iter().enumerate() {
            match o {
                Output::Persist(s) => {
                    if let Some(m) = &s.last_signed {
                        self.record_signed(m, i);
                        persisted.push(m.clone());
                    }
                    for v in &s.votes {
                        assert!(v.verify(CHAIN).is_ok(), "persisted vote does not verify");
                    }
                    self.durable_before = self.durable.take();
                    self.durable = Some((self.batch, i, s));
                }
                Output::BroadcastVote(v) => {
                    assert_eq!(
                        v.validator,
                        self.me().public(),
                        "broadcast someone else's vote"
                    );
                    assert!(v.verify(CHAIN).is_ok(), "our vote does not verify");
                    let m = SignedMessage::Vote(v.clone());
                    let (slot, value) = slot_and_value(&m);
                    let resend = self.signed.get(&slot).is_some_and(|(x, _, _)| *x == value);
                    assert!(
                        resend || persisted.contains(&m),
                        "vote at {slot:?} broadcast before it was persisted"
                    );
                    self.record_signed(&m, i);
                    self.ours.push((v, self.batch, i));
                }
                Output::BroadcastProposal { proposal, block } => {
                    assert_eq!(proposal.block_id, block.id(), "proposal for another block");
                    assert!(
                        proposal.verify(CHAIN).is_ok(),
                        "our proposal does not verify"
                    );
                    let m = SignedMessage::Proposal(proposal);
                    let (slot, value) = slot_and_value(&m);
                    let resend = self.signed.get(&slot).is_some_and(|(x, _, _)| *x == value);
                    assert!(
                        resend || persisted.contains(&m),
                        "proposal at {slot:?} broadcast before it was persisted"
                    );
                    self.record_signed(&m, i);
                }
                Output::Decide {
                    height,
                    block,
                    commit,
                    ..
                } => {
                    assert!(
                        commit.verify(CHAIN, &self.set, height, &block.id()).is_ok(),
                        "decided without a valid commit"
                    );
                    let before = self
                        .decided
                        .insert(height, (block.id(), block.header.time, self.batch, i));
                    assert!(before.is_none(), "height {height} decided twice");
                }
                Output::Evidence(dv) => {
                    assert!(
                        dv.verify(CHAIN, &self.set).is_ok(),
                        "evidence does not verify"
                    );
                    assert_ne!(
                        dv.first.validator,
                        self.me().public(),
                        "evidence against us"
                    );
                }
                Output::RequestValue { height, round } => self.request = Some((height, round)),
                Output::ScheduleTimeout { .. }
                | Output::ValidateValue { .. }
                | Output::NewRound { .. } => {}
            }
        }
    }

    /// A crash and a restart. `during_last_persist`: the crash hit while the
    /// latest persist was being written, so it never became durable and nothing
    /// after it in its batch happened.
    fn restart(&mut self, during_last_persist: bool) {
        // Only the latest batch can be cut short: a persist of an earlier batch
        // completed before anything of the later ones happened.
        let cut = self
            .durable
            .as_ref()
            .is_some_and(|(batch, _, _)| *batch == self.batch);
        if during_last_persist && cut {
            if let Some((batch, index, _)) = self.durable.take() {
                let undone = |b: usize, i: usize| b == batch && i >= index;
                self.signed.retain(|_, (_, b, i)| !undone(*b, *i));
                self.ours.retain(|(_, b, i)| !undone(*b, *i));
                self.decided.retain(|_, (_, _, b, i)| !undone(*b, *i));
                self.durable = self.durable_before.take();
            }
        }
        self.durable_before = None;
        let restored = self.durable.as_ref().map(|(_, _, s)| s.clone());
        self.node = Consensus::new(params(&self.set, &self.keys[0]), restored);
        self.request = None;
        let height = self.next_height();
        let last_block_time = self.last_block_time();
        self.feed(Input::StartHeight {
            height,
            last_block_time,
        });
    }
}

fn height_near(r: &mut Bytes, current: Height) -> Height {
    match r.u8() % 8 {
        0 => Height(current.0.saturating_sub(1).max(1)),
        1 => current.next(),
        2 => Height(current.0 + 2),
        _ => current,
    }
}

fn round_of(r: &mut Bytes) -> Round {
    let b = r.u8();
    if b < 250 {
        Round(u32::from(b % 4))
    } else {
        Round(u32::from(r.u16()))
    }
}

fn value_at(r: &mut Bytes, h: Height) -> Option<Arc<Block>> {
    match r.u8() % 4 {
        0 => None,
        tag => Some(block(h.0, tag)),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Bytes(data);
    let mut w = World::new();
    w.feed(Input::StartHeight {
        height: Height(1),
        last_block_time: Timestamp(0),
    });
    for _ in 0..MAX_OPS {
        if r.is_empty() {
            break;
        }
        w.now = w.now.plus_millis(u64::from(r.u8()));
        let h = w.node.height();
        match r.u8() % 10 {
            0 | 1 | 2 => {
                // A vote of one of the others (index 1..=3).
                let k = 1 + usize::from(r.u8()) % 3;
                let vote_type = if r.u8() & 1 == 0 {
                    VoteType::Prevote
                } else {
                    VoteType::Precommit
                };
                let height = height_near(&mut r, h);
                let round = round_of(&mut r);
                let value = value_at(&mut r, height).map(|b| b.id());
                let v = Vote::new_signed(&w.keys[k], CHAIN, vote_type, height, round, value, w.now);
                w.feed(Input::Vote(v));
            }
            3 => {
                // A proposal by one of the others, proposer or not.
                let k = 1 + usize::from(r.u8()) % 3;
                let height = height_near(&mut r, h);
                let round = round_of(&mut r);
                let pol_round = match r.u8() % 3 {
                    0 => None,
                    _ => Some(round_of(&mut r)),
                };
                let b = value_at(&mut r, height).unwrap_or_else(|| block(height.0, 1));
                let p = Proposal::new_signed(
                    &w.keys[k],
                    CHAIN,
                    height,
                    round,
                    pol_round,
                    b.id(),
                    w.now,
                );
                w.feed(Input::Proposal {
                    proposal: p,
                    block: b,
                });
            }
            4 => {
                let kind = match r.u8() % 3 {
                    0 => TimeoutKind::Propose,
                    1 => TimeoutKind::Prevote,
                    _ => TimeoutKind::Precommit,
                };
                let round = if r.u8() & 1 == 0 {
                    w.node.round()
                } else {
                    round_of(&mut r)
                };
                w.feed(Input::Timeout(Timeout {
                    height: h,
                    round,
                    kind,
                }));
            }
            5 => {
                let height = height_near(&mut r, h);
                let Some(b) = value_at(&mut r, height) else {
                    continue;
                };
                let valid = r.u8() % 4 != 0;
                w.feed(Input::ValueValidity {
                    height,
                    block_id: b.id(),
                    valid,
                });
            }
            6 => {
                let (height, round) = w.request.unwrap_or((h, w.node.round()));
                let tag = 1 + r.u8() % 3;
                w.feed(Input::ProposeValue {
                    height,
                    round,
                    block: block(height.0, tag),
                });
            }
            7 => {
                // One of our own votes comes back from a peer.
                if !w.ours.is_empty() {
                    let i = usize::from(r.u16()) % w.ours.len();
                    let v = w.ours[i].0.clone();
                    w.feed(Input::Vote(v));
                }
            }
            8 => {
                // The runtime starts the next height once the current one is decided.
                let next = w.next_height();
                if next > h {
                    let last_block_time = w.last_block_time();
                    w.feed(Input::StartHeight {
                        height: next,
                        last_block_time,
                    });
                }
            }
            _ => {
                let during = r.u8() & 1 == 1;
                w.restart(during);
            }
        }
    }
});
