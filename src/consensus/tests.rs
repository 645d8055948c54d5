//! Table tests of the consensus core: one table per rule of "The latest gossip on
//! BFT consensus" (arXiv:1807.04938), with the paper's line numbers.
//!
//! Each row starts a fresh state machine, feeds its `setup` inputs, then its
//! `input`, and asserts the EXACT sequence of outputs of that input (as compact
//! [`Out`] summaries) and the step, round, lock and valid value afterwards. The
//! harness also checks on every output of every row, setup included:
//!
//! - every freshly signed vote or proposal is broadcast right after an
//!   [`Output::Persist`] whose `last_signed` is that very message and whose lock is
//!   the lock after the step, and it is in a slot above every slot signed before;
//! - nothing is ever signed twice in one slot with different content (across
//!   restarts too);
//! - every `Decide` carries a commit that passes
//!   [`crate::types::Commit::verify`] for its height and block, every `Evidence`
//!   verifies and consists of two votes that were fed in;
//! - every output is for the current height, every timeout lasts what the
//!   parameters say for its kind and round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::types::{
    Block, BlockId, Hash, Header, Height, Keypair, Proposal, ProposerSchedule, Round, Timestamp,
    Validator, ValidatorSet, Vote, VoteType,
};

const CHAIN: &str = "consort-test";
/// The time passed with every input.
const NOW: Timestamp = Timestamp(1_000);
/// The time in every vote and proposal the harness signs for other validators, so
/// that a vote built twice is the identical vote.
const MSG_TIME: Timestamp = Timestamp(900);
/// Index (in `from` lists) standing for a key that is not in the validator set.
const X: usize = 99;

use TimeoutKind as Tk;

/// The blocks rows talk about; each label is a distinct block at every height.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum Blk {
    A,
    B,
}
use Blk::{A, B};

/// A compact, comparable summary of one [`Output`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Persist,
    /// BroadcastProposal(round, block, validRound).
    Proposal(u32, Blk, Option<u32>),
    /// BroadcastVote of our prevote (round, value).
    Prevote(u32, Option<Blk>),
    /// BroadcastVote of our precommit (round, value).
    Precommit(u32, Option<Blk>),
    /// ScheduleTimeout(kind, round).
    Timeout(Tk, u32),
    RequestValue(u32),
    /// ValidateValue(round of the proposal, block).
    ValidateValue(u32, Blk),
    /// Decide(round, block).
    Decide(u32, Blk),
    /// Evidence against the validator with this index among the others.
    Evidence(usize),
    NewRound(u32),
}
use Out::*;

/// Who signs a proposal.
#[derive(Copy, Clone, Debug)]
enum By {
    /// The proposer of its height and round.
    Proposer,
    /// The first validator other than us that is not the proposer.
    NotProposer,
}

/// One input of a row. Validators other than us are named by their index among
/// the others (0, 1, 2 with four validators); `X` is a key outside the set.
#[derive(Clone, Debug)]
enum In {
    /// Input::StartHeight(h).
    Start(u64),
    /// A proposal of `named` at (h, r) with validRound `vr`, travelling with the
    /// block `carried`.
    Proposal {
        h: u64,
        r: u32,
        named: Blk,
        carried: Blk,
        vr: Option<u32>,
        by: By,
    },
    /// One vote from each of `from`, fed one after another.
    Votes {
        h: u64,
        t: VoteType,
        r: u32,
        v: Option<Blk>,
        from: &'static [usize],
    },
    /// Input::ValueValidity.
    Validity { h: u64, blk: Blk, ok: bool },
    /// Input::ProposeValue.
    Value { h: u64, r: u32, blk: Blk },
    /// Input::Timeout.
    Timeout { h: u64, kind: Tk, r: u32 },
    /// Crash, and start a new machine from the `n`-th state persisted so far
    /// (1-based); `None` for the last one.
    Restart(Option<usize>),
}

fn start(h: u64) -> In {
    In::Start(h)
}

fn proposal(r: u32, blk: Blk, vr: Option<u32>) -> In {
    In::Proposal {
        h: 1,
        r,
        named: blk,
        carried: blk,
        vr,
        by: By::Proposer,
    }
}

fn proposal_by_non_proposer(r: u32, blk: Blk) -> In {
    In::Proposal {
        h: 1,
        r,
        named: blk,
        carried: blk,
        vr: None,
        by: By::NotProposer,
    }
}

/// A proposal that names one block and carries another.
fn mismatched_proposal(r: u32, named: Blk, carried: Blk) -> In {
    In::Proposal {
        h: 1,
        r,
        named,
        carried,
        vr: None,
        by: By::Proposer,
    }
}

fn prevotes(r: u32, v: Option<Blk>, from: &'static [usize]) -> In {
    In::Votes {
        h: 1,
        t: VoteType::Prevote,
        r,
        v,
        from,
    }
}

fn precommits(r: u32, v: Option<Blk>, from: &'static [usize]) -> In {
    In::Votes {
        h: 1,
        t: VoteType::Precommit,
        r,
        v,
        from,
    }
}

fn valid(blk: Blk) -> In {
    In::Validity {
        h: 1,
        blk,
        ok: true,
    }
}

fn invalid(blk: Blk) -> In {
    In::Validity {
        h: 1,
        blk,
        ok: false,
    }
}

fn value(r: u32, blk: Blk) -> In {
    In::Value { h: 1, r, blk }
}

fn timeout(kind: Tk, r: u32) -> In {
    In::Timeout { h: 1, kind, r }
}

fn restart() -> In {
    In::Restart(None)
}

/// Crash right after the `n`-th persisted state (1-based) became durable.
fn restart_after_persist(n: usize) -> In {
    In::Restart(Some(n))
}

/// The same input at height `h`.
fn at(h: u64, input: In) -> In {
    match input {
        In::Proposal {
            r,
            named,
            carried,
            vr,
            by,
            ..
        } => In::Proposal {
            h,
            r,
            named,
            carried,
            vr,
            by,
        },
        In::Votes { t, r, v, from, .. } => In::Votes { h, t, r, v, from },
        In::Validity { blk, ok, .. } => In::Validity { h, blk, ok },
        In::Value { r, blk, .. } => In::Value { h, r, blk },
        In::Timeout { kind, r, .. } => In::Timeout { h, kind, r },
        other => other,
    }
}

/// The state a row expects afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
struct After {
    step: Step,
    round: u32,
    locked: Option<(u32, Blk)>,
    valid: Option<(u32, Blk)>,
}

fn after(step: Step, round: u32) -> After {
    After {
        step,
        round,
        locked: None,
        valid: None,
    }
}

impl After {
    fn locked(mut self, r: u32, blk: Blk) -> After {
        self.locked = Some((r, blk));
        self
    }

    fn valid(mut self, r: u32, blk: Blk) -> After {
        self.valid = Some((r, blk));
        self
    }

    /// Locked on and valid value `blk` from round `r`.
    fn lock(self, r: u32, blk: Blk) -> After {
        self.locked(r, blk).valid(r, blk)
    }
}

struct Row {
    name: &'static str,
    setup: Vec<In>,
    input: In,
    out: Vec<Out>,
    after: After,
}

/// Which validator we are.
#[derive(Copy, Clone, Debug)]
enum Me {
    /// The proposer of this round at height 1.
    ProposerOf(u32),
    /// A validator that proposes none of rounds 0..=r at height 1.
    NotProposerUpTo(u32),
    /// The validator with this canonical index.
    Index(usize),
}

#[derive(Copy, Clone, Debug)]
struct Cfg {
    /// Voting power per canonical index (ascending public key).
    powers: &'static [u64],
    me: Me,
}

/// Four validators of equal power (f = 1), we propose none of rounds 0..=2 at
/// height 1 (and so, with four rotating proposers, we propose round 3).
const FOUR: Cfg = Cfg {
    powers: &[1, 1, 1, 1],
    me: Me::NotProposerUpTo(2),
};

/// Timeouts with different values per kind, so a mix-up shows.
fn test_timeouts() -> Timeouts {
    Timeouts {
        propose: StepTimeout {
            base: Duration::from_millis(100),
            delta: Duration::from_millis(10),
        },
        prevote: StepTimeout {
            base: Duration::from_millis(200),
            delta: Duration::from_millis(20),
        },
        precommit: StepTimeout {
            base: Duration::from_millis(300),
            delta: Duration::from_millis(30),
        },
    }
}

struct Harness {
    /// Keys in canonical order (index i is `set.validators()[i]`).
    keys: Vec<Keypair>,
    outsider: Keypair,
    set: ValidatorSet,
    params: Params,
    /// Our canonical index.
    me: usize,
    /// Canonical indexes of the other validators, ascending.
    others: Vec<usize>,
    sm: Consensus,
    /// Every state the machine asked to persist, in order.
    persisted: Vec<PersistedState>,
    /// Every message we broadcast, across restarts.
    sent: Vec<SignedMessage>,
    /// Every vote fed in.
    fed: Vec<Vote>,
    labels: HashMap<BlockId, Blk>,
}

impl Harness {
    fn new(cfg: Cfg) -> Harness {
        let mut keys: Vec<Keypair> = (0..cfg.powers.len())
            .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
            .collect();
        keys.sort_by_key(|k| k.public());
        let set = ValidatorSet::new(
            keys.iter()
                .zip(cfg.powers)
                .enumerate()
                .map(|(i, (k, p))| Validator {
                    public_key: k.public(),
                    power: *p,
                    name: format!("v{i}"),
                })
                .collect(),
        )
        .unwrap();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(set.index_of(&k.public()), Some(i));
        }
        let schedule = ProposerSchedule::genesis(&set);
        let me = match cfg.me {
            Me::ProposerOf(r) => schedule.proposer_index(r),
            Me::NotProposerUpTo(r) => (0..keys.len())
                .find(|i| (0..=r).all(|r| schedule.proposer_index(r) != *i))
                .expect("some validator proposes none of these rounds"),
            Me::Index(i) => i,
        };
        let others = (0..keys.len()).filter(|i| *i != me).collect();
        let params = Params {
            chain_id: CHAIN.into(),
            validators: set.clone(),
            key: Some(keys[me].clone()),
            timeouts: test_timeouts(),
        };
        let mut labels = HashMap::new();
        for h in 1..=3 {
            for blk in [A, B] {
                labels.insert(block(h, blk).id(), blk);
            }
        }
        Harness {
            sm: Consensus::new(params.clone(), None),
            keys,
            outsider: Keypair::from_seed([99; 32]),
            set,
            params,
            me,
            others,
            persisted: Vec::new(),
            sent: Vec::new(),
            fed: Vec::new(),
            labels,
        }
    }

    /// Canonical index of the proposer of (h, r).
    fn proposer(&self, h: u64, r: u32) -> usize {
        ProposerSchedule::at_height(&self.set, h).proposer_index(r)
    }

    fn other(&self, i: usize) -> &Keypair {
        if i == X {
            &self.outsider
        } else {
            &self.keys[self.others[i]]
        }
    }

    /// Feeds one row input (a vote list is fed vote by vote) and returns all the
    /// outputs, checked against the invariants of the module comment.
    fn feed(&mut self, input: &In) -> Vec<Output> {
        let inputs: Vec<Input> = match input {
            In::Start(h) => vec![Input::StartHeight {
                height: Height(*h),
                last_block_time: Timestamp(0),
            }],
            In::Proposal {
                h,
                r,
                named,
                carried,
                vr,
                by,
            } => {
                let p = self.proposer(*h, *r);
                let signer = match by {
                    By::Proposer => p,
                    By::NotProposer => *self.others.iter().find(|i| **i != p).unwrap(),
                };
                let proposal = Proposal::new_signed(
                    &self.keys[signer],
                    CHAIN,
                    Height(*h),
                    Round(*r),
                    vr.map(Round),
                    block(*h, *named).id(),
                    MSG_TIME,
                );
                vec![Input::Proposal {
                    proposal,
                    block: block(*h, *carried),
                }]
            }
            In::Votes { h, t, r, v, from } => from
                .iter()
                .map(|i| {
                    let vote = Vote::new_signed(
                        self.other(*i),
                        CHAIN,
                        *t,
                        Height(*h),
                        Round(*r),
                        v.map(|b| block(*h, b).id()),
                        MSG_TIME,
                    );
                    self.fed.push(vote.clone());
                    Input::Vote(vote)
                })
                .collect(),
            In::Validity { h, blk, ok } => vec![Input::ValueValidity {
                height: Height(*h),
                block_id: block(*h, *blk).id(),
                valid: *ok,
            }],
            In::Value { h, r, blk } => vec![Input::ProposeValue {
                height: Height(*h),
                round: Round(*r),
                block: block(*h, *blk),
            }],
            In::Timeout { h, kind, r } => vec![Input::Timeout(super::Timeout {
                height: Height(*h),
                round: Round(*r),
                kind: *kind,
            })],
            In::Restart(n) => {
                let state = match n {
                    None => self.persisted.last().cloned(),
                    Some(n) => Some(self.persisted[n - 1].clone()),
                };
                self.sm = Consensus::new(self.params.clone(), state);
                return Vec::new();
            }
        };
        let mut all = Vec::new();
        for i in inputs {
            let out = self.sm.handle(NOW, i);
            self.check(&out);
            all.extend(out);
        }
        all
    }

    /// The invariants every batch of outputs must keep.
    fn check(&mut self, out: &[Output]) {
        let height = self.sm.height();
        let me = self.keys[self.me].public();
        for (i, o) in out.iter().enumerate() {
            let msg = match o {
                Output::Persist(ps) => {
                    assert_eq!(ps.height, height, "persisted height");
                    self.persisted.push(ps.clone());
                    None
                }
                Output::BroadcastVote(v) => {
                    assert_eq!(v.validator, me, "a vote we broadcast is ours");
                    v.verify(CHAIN).expect("our vote verifies");
                    assert_eq!(v.height, height);
                    Some(SignedMessage::Vote(v.clone()))
                }
                Output::BroadcastProposal { proposal, block } => {
                    assert_eq!(proposal.proposer, me, "a proposal we broadcast is ours");
                    proposal.verify(CHAIN).expect("our proposal verifies");
                    assert_eq!(proposal.block_id, block.id());
                    assert_eq!(proposal.height, height);
                    Some(SignedMessage::Proposal(proposal.clone()))
                }
                Output::ScheduleTimeout { timeout, duration } => {
                    assert_eq!(timeout.height, height);
                    let t = &self.params.timeouts;
                    let step = match timeout.kind {
                        Tk::Propose => t.propose,
                        Tk::Prevote => t.prevote,
                        Tk::Precommit => t.precommit,
                    };
                    assert_eq!(*duration, step.at(timeout.round.0), "{timeout:?}");
                    None
                }
                Output::RequestValue { height: h, .. } | Output::NewRound { height: h, .. } => {
                    assert_eq!(*h, height);
                    None
                }
                Output::ValidateValue {
                    height: h, block, ..
                } => {
                    assert_eq!(*h, height);
                    assert_eq!(block.height(), height);
                    None
                }
                Output::Decide {
                    height: h,
                    round,
                    block,
                    commit,
                } => {
                    assert_eq!(*h, height);
                    assert_eq!(commit.round, *round);
                    commit
                        .verify(CHAIN, &self.set, height, &block.id())
                        .expect("the commit of a decision verifies");
                    None
                }
                Output::Evidence(dv) => {
                    dv.verify(CHAIN, &self.set).expect("evidence verifies");
                    assert!(self.fed.contains(&dv.first), "first vote was fed");
                    assert!(self.fed.contains(&dv.second), "second vote was fed");
                    None
                }
            };
            let Some(msg) = msg else { continue };
            if let Some(conflict) = self
                .sent
                .iter()
                .find(|s| s.slot() == msg.slot() && **s != msg)
            {
                panic!("double signing: {msg:?} after {conflict:?}");
            }
            if self.sent.contains(&msg) {
                continue; // the identical message again: nothing new was signed
            }
            if let Some(top) = self.sent.iter().map(|s| s.slot()).max() {
                assert!(msg.slot() > top, "signed {msg:?} below slot {top:?}");
            }
            let Some(Output::Persist(ps)) = i.checked_sub(1).map(|j| &out[j]) else {
                panic!("{msg:?} is not right after a Persist: {out:?}");
            };
            assert_eq!(ps.last_signed.as_ref(), Some(&msg), "persisted message");
            let (h, r, _) = msg.slot();
            assert_eq!((ps.height, ps.round), (h, r), "persisted height and round");
            assert_eq!(ps.locked, self.sm.locked(), "persisted lock is the lock");
            self.sent.push(msg);
        }
    }

    fn label(&self, id: &BlockId) -> Blk {
        self.labels[id]
    }

    fn summary(&self, out: &[Output]) -> Vec<Out> {
        out.iter()
            .map(|o| match o {
                Output::Persist(_) => Persist,
                Output::BroadcastProposal { proposal: p, .. } => {
                    Proposal(p.round.0, self.label(&p.block_id), p.pol_round.map(|r| r.0))
                }
                Output::BroadcastVote(v) => {
                    let value = v.block_id.map(|id| self.label(&id));
                    match v.vote_type {
                        VoteType::Prevote => Prevote(v.round.0, value),
                        VoteType::Precommit => Precommit(v.round.0, value),
                    }
                }
                Output::ScheduleTimeout { timeout, .. } => Timeout(timeout.kind, timeout.round.0),
                Output::RequestValue { round, .. } => RequestValue(round.0),
                Output::ValidateValue { round, block, .. } => {
                    ValidateValue(round.0, self.label(&block.id()))
                }
                Output::Decide { round, block, .. } => Decide(round.0, self.label(&block.id())),
                Output::Evidence(dv) => {
                    let i = self
                        .others
                        .iter()
                        .position(|i| self.keys[*i].public() == dv.first.validator)
                        .expect("evidence against a validator");
                    Evidence(i)
                }
                Output::NewRound { round, .. } => NewRound(round.0),
            })
            .collect()
    }

    fn state(&self) -> After {
        let label = |lr: Option<(Round, BlockId)>| lr.map(|(r, id)| (r.0, self.label(&id)));
        After {
            step: self.sm.step(),
            round: self.sm.round().0,
            locked: label(self.sm.locked()),
            valid: label(self.sm.valid()),
        }
    }
}

/// The block with label `blk` at height `h`. Its content does not matter to the
/// core; its id differs per label and height.
fn block(h: u64, blk: Blk) -> Arc<Block> {
    let tag = format!("{blk:?}@{h}");
    Arc::new(Block {
        header: Header {
            chain_id: CHAIN.into(),
            height: Height(h),
            time: Timestamp(h),
            last_block_id: None,
            last_commit_hash: Hash::ZERO,
            data_hash: Hash::digest(tag.as_bytes()),
            app_hash: Hash::ZERO,
            validators_hash: Hash::ZERO,
            evidence_hash: Hash::ZERO,
            proposer: Keypair::from_seed([1; 32]).public(),
        },
        txs: Vec::new(),
        last_commit: None,
        evidence: Vec::new(),
    })
}

/// Runs every row of a table; reports all failing rows, not just the first.
fn run(cfg: Cfg, rows: Vec<Row>) {
    let mut failures = Vec::new();
    for row in rows {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut h = Harness::new(cfg);
            for input in &row.setup {
                h.feed(input);
            }
            let out = h.feed(&row.input);
            let got = h.summary(&out);
            let state = h.state();
            (got, state)
        }));
        match result {
            Ok((got, state)) => {
                if got != row.out {
                    failures.push(format!(
                        "{}:\n  expected outputs {:?}\n  got              {:?}",
                        row.name, row.out, got
                    ));
                } else if state != row.after {
                    failures.push(format!(
                        "{}:\n  expected state {:?}\n  got            {:?}",
                        row.name, row.after, state
                    ));
                }
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: panicked: {msg}", row.name));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---- setups shared by several tables ----

/// Height 1, round 0: A proposed, checked, prevoted by us, o0 and o1: we are locked
/// on A in round 0 and have precommitted it.
fn locked_on_a() -> Vec<In> {
    vec![
        start(1),
        proposal(0, A, None),
        valid(A),
        prevotes(0, Some(A), &[0, 1]),
    ]
}

/// [`locked_on_a`], then round 0 ends without a decision: we are in round 1, step
/// propose, locked on A from round 0.
fn locked_on_a_in_round_1() -> Vec<In> {
    let mut s = locked_on_a();
    s.extend([precommits(0, None, &[0, 1]), timeout(Tk::Precommit, 0)]);
    s
}

/// Round 0 without a proposal where o0, o1 and o2 prevote A (a polka we saw but
/// did not act on: we prevoted and precommitted nil); we are in round 1, step
/// propose, not locked.
fn polka_for_a_in_round_0_then_round_1() -> Vec<In> {
    vec![
        start(1),
        prevotes(0, Some(A), &[0, 1, 2]),
        timeout(Tk::Propose, 0),
        timeout(Tk::Prevote, 0),
        precommits(0, None, &[0, 1]),
        timeout(Tk::Precommit, 0),
    ]
}

/// Height 1 decided: A in round 0.
fn decided_height_1() -> Vec<In> {
    vec![
        start(1),
        proposal(0, A, None),
        valid(A),
        precommits(0, Some(A), &[0, 1, 2]),
    ]
}

fn with(mut setup: Vec<In>, more: impl IntoIterator<Item = In>) -> Vec<In> {
    setup.extend(more);
    setup
}

/// The tables name validators by their place among the others and rely on who
/// proposes; this pins that down, so a change of keys or of the proposer
/// algorithm shows here first.
#[test]
fn tables_assume_this_schedule() {
    let who = |h: &Harness, height: u64, r: u32| {
        let p = h.proposer(height, r);
        h.others
            .iter()
            .position(|i| *i == p)
            .map_or(-1, |o| o as i64)
    };
    // Four equal validators: we propose round 3 of height 1 and round 2 of height 2.
    let h = Harness::new(FOUR);
    let h1: Vec<i64> = (0..5).map(|r| who(&h, 1, r)).collect();
    let h2: Vec<i64> = (0..4).map(|r| who(&h, 2, r)).collect();
    assert_eq!(h1, vec![0, 1, 2, -1, 0]);
    assert_eq!(h2, vec![1, 2, -1, 0]);
    assert_eq!(who(&h, 1, 64), 0);
    assert_eq!(who(&h, 1, 65), 1);
    // Weighted: o0 = 3, o1 = 3, o2 = 2, we have 1 of 9.
    let h = Harness::new(WEIGHTED);
    assert_eq!(
        h.others
            .iter()
            .map(|i| h.set.validators()[*i].power)
            .collect::<Vec<_>>(),
        vec![3, 3, 2]
    );
    assert_eq!(h.set.validators()[h.me].power, 1);
    let h1: Vec<i64> = (0..3).map(|r| who(&h, 1, r)).collect();
    assert_eq!(h1, vec![0, 1, 2]);
}

// ---- L11: StartRound ----

#[test]
fn l11_start_round() {
    const PROPOSER_0: Cfg = Cfg {
        powers: &[1, 1, 1, 1],
        me: Me::ProposerOf(0),
    };
    run(
        PROPOSER_0,
        vec![
            Row {
                name: "proposer of round 0 asks for a value (L18) and schedules timeoutPropose",
                setup: vec![],
                input: start(1),
                out: vec![NewRound(0), RequestValue(0), Timeout(Tk::Propose, 0)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "proposer broadcasts the value with validRound -1 (L19), then prevotes it (L22)",
                setup: vec![start(1)],
                input: value(0, A),
                out: vec![Persist, Proposal(0, A, None), Persist, Prevote(0, Some(A))],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "a value for another round is not proposed",
                setup: vec![start(1)],
                input: value(1, A),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a value arriving after timeoutPropose is not proposed",
                setup: vec![start(1), timeout(Tk::Propose, 0)],
                input: value(0, A),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "only one value is proposed per round",
                setup: vec![start(1), value(0, A)],
                input: value(0, B),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
        ],
    );
    run(
        FOUR,
        vec![
            Row {
                name: "non-proposer only schedules timeoutPropose (L21)",
                setup: vec![],
                input: start(1),
                out: vec![NewRound(0), Timeout(Tk::Propose, 0)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "non-proposer with a validValue only schedules timeoutPropose",
                setup: with(locked_on_a(), [precommits(0, None, &[0, 1])]),
                input: timeout(Tk::Precommit, 0),
                out: vec![NewRound(1), Timeout(Tk::Propose, 1)],
                after: after(Step::Propose, 1).lock(0, A),
            },
            Row {
                name: "starting the current height again changes nothing",
                setup: vec![start(1), timeout(Tk::Propose, 0)],
                input: start(1),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
        ],
    );
    const PROPOSER_1: Cfg = Cfg {
        powers: &[1, 1, 1, 1],
        me: Me::ProposerOf(1),
    };
    run(
        PROPOSER_1,
        vec![
            Row {
                name: "proposer re-proposes its locked validValue with validRound (L15-L16), prevotes it (L28)",
                setup: with(locked_on_a(), [precommits(0, None, &[0, 1])]),
                input: timeout(Tk::Precommit, 0),
                out: vec![
                    NewRound(1),
                    Persist,
                    Proposal(1, A, Some(0)),
                    Timeout(Tk::Propose, 1),
                    Persist,
                    Prevote(1, Some(A)),
                ],
                after: after(Step::Prevote, 1).lock(0, A),
            },
            Row {
                name: "proposer re-proposes a validValue it is not locked on (L42 then L15)",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    timeout(Tk::Propose, 0),
                    prevotes(0, Some(A), &[0, 1]),
                    timeout(Tk::Prevote, 0),
                    valid(A),
                    prevotes(0, Some(A), &[2]),
                    precommits(0, None, &[0, 1]),
                ],
                input: timeout(Tk::Precommit, 0),
                out: vec![
                    NewRound(1),
                    Persist,
                    Proposal(1, A, Some(0)),
                    Timeout(Tk::Propose, 1),
                    Persist,
                    Prevote(1, Some(A)),
                ],
                after: after(Step::Prevote, 1).valid(0, A),
            },
        ],
    );
}

// ---- L22: a fresh proposal (validRound -1) in step propose ----

#[test]
fn l22_prevote_on_fresh_proposal() {
    run(
        FOUR,
        vec![
            Row {
                name: "valid and not locked: prevote v (L24)",
                setup: vec![start(1), proposal(0, A, None)],
                input: valid(A),
                out: vec![Persist, Prevote(0, Some(A))],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "not yet checked: ask for validation, no prevote",
                setup: vec![start(1)],
                input: proposal(0, A, None),
                out: vec![ValidateValue(0, A)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "invalid: prevote nil (L26)",
                setup: vec![start(1), proposal(0, A, None)],
                input: invalid(A),
                out: vec![Persist, Prevote(0, None)],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "locked on v: prevote v (L24)",
                setup: locked_on_a_in_round_1(),
                input: proposal(1, A, None),
                out: vec![Persist, Prevote(1, Some(A))],
                after: after(Step::Prevote, 1).lock(0, A),
            },
            Row {
                name: "locked on another value: prevote nil although v is valid (L26)",
                setup: with(locked_on_a_in_round_1(), [proposal(1, B, None)]),
                input: valid(B),
                out: vec![Persist, Prevote(1, None)],
                after: after(Step::Prevote, 1).lock(0, A),
            },
            Row {
                name: "a proposal kept from a later round is prevoted when that round starts",
                setup: vec![start(1), proposal(1, A, None), valid(A)],
                input: timeout(Tk::Precommit, 0),
                out: vec![
                    NewRound(1),
                    Timeout(Tk::Propose, 1),
                    Persist,
                    Prevote(1, Some(A)),
                ],
                after: after(Step::Prevote, 1),
            },
            Row {
                name: "a proposal of a later round is not the proposal of round_p",
                setup: vec![start(1), proposal(1, A, None)],
                input: valid(A),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "validity arriving after timeoutPropose: no second prevote",
                setup: vec![start(1), proposal(0, A, None), timeout(Tk::Propose, 0)],
                input: valid(A),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
        ],
    );
}

// ---- L28: a proposal with validRound vr and a polka in vr ----

#[test]
fn l28_prevote_on_reproposal() {
    run(
        FOUR,
        vec![
            Row {
                name: "not locked, polka in vr, valid: prevote v (L30)",
                setup: with(
                    polka_for_a_in_round_0_then_round_1(),
                    [proposal(1, A, Some(0))],
                ),
                input: valid(A),
                out: vec![Persist, Prevote(1, Some(A))],
                after: after(Step::Prevote, 1),
            },
            Row {
                name: "polka in vr but invalid: prevote nil (L32)",
                setup: with(
                    polka_for_a_in_round_0_then_round_1(),
                    [proposal(1, A, Some(0))],
                ),
                input: invalid(A),
                out: vec![Persist, Prevote(1, None)],
                after: after(Step::Prevote, 1),
            },
            Row {
                name: "polka in vr, not yet checked: ask, wait",
                setup: polka_for_a_in_round_0_then_round_1(),
                input: proposal(1, A, Some(0)),
                out: vec![ValidateValue(1, A)],
                after: after(Step::Propose, 1),
            },
            Row {
                name: "locked on v in vr: prevote v",
                setup: locked_on_a_in_round_1(),
                input: proposal(1, A, Some(0)),
                out: vec![Persist, Prevote(1, Some(A))],
                after: after(Step::Prevote, 1).lock(0, A),
            },
            Row {
                name: "locked on another value in a round <= vr: prevote v (lockedRound <= vr)",
                setup: vec![
                    start(1),
                    proposal(0, B, None),
                    valid(B),
                    prevotes(0, Some(B), &[0, 1]),
                    precommits(0, None, &[0, 1]),
                    timeout(Tk::Precommit, 0),
                    prevotes(1, Some(A), &[0, 1, 2]),
                    timeout(Tk::Propose, 1),
                    timeout(Tk::Prevote, 1),
                    precommits(1, None, &[0, 1]),
                    timeout(Tk::Precommit, 1),
                    proposal(2, A, Some(1)),
                ],
                input: valid(A),
                out: vec![Persist, Prevote(2, Some(A))],
                after: after(Step::Prevote, 2).lock(0, B),
            },
            Row {
                name: "locked on another value in a round > vr: prevote nil (L32)",
                setup: with(
                    polka_for_a_in_round_0_then_round_1(),
                    [
                        proposal(1, B, None),
                        valid(B),
                        prevotes(1, Some(B), &[0, 1]),
                        precommits(1, None, &[0, 1]),
                        timeout(Tk::Precommit, 1),
                        proposal(2, A, Some(0)),
                    ],
                ),
                input: valid(A),
                out: vec![Persist, Prevote(2, None)],
                after: after(Step::Prevote, 2).lock(1, B),
            },
            Row {
                name: "locked on v in a round > vr: prevote v (lockedValue = v)",
                setup: with(
                    polka_for_a_in_round_0_then_round_1(),
                    [
                        proposal(1, A, None),
                        valid(A),
                        prevotes(1, Some(A), &[0, 1]),
                        precommits(1, None, &[0, 1]),
                        timeout(Tk::Precommit, 1),
                    ],
                ),
                input: proposal(2, A, Some(0)),
                out: vec![Persist, Prevote(2, Some(A))],
                after: after(Step::Prevote, 2).lock(1, A),
            },
            Row {
                name: "2f prevotes in vr are no polka: wait for timeoutPropose",
                setup: vec![
                    start(1),
                    prevotes(0, Some(A), &[0, 1]),
                    timeout(Tk::Propose, 0),
                    timeout(Tk::Prevote, 0),
                    precommits(0, None, &[0, 1]),
                    timeout(Tk::Precommit, 0),
                    proposal(1, A, Some(0)),
                ],
                input: valid(A),
                out: vec![],
                after: after(Step::Propose, 1),
            },
            Row {
                name: "the polka in vr completing late: prevote v",
                setup: vec![
                    start(1),
                    prevotes(0, Some(A), &[0, 1]),
                    timeout(Tk::Propose, 0),
                    timeout(Tk::Prevote, 0),
                    precommits(0, None, &[0, 1]),
                    timeout(Tk::Precommit, 0),
                    proposal(1, A, Some(0)),
                    valid(A),
                ],
                input: prevotes(0, Some(A), &[2]),
                out: vec![Persist, Prevote(1, Some(A))],
                after: after(Step::Prevote, 1),
            },
            Row {
                name: "a polka in another round than vr does not count",
                setup: with(
                    polka_for_a_in_round_0_then_round_1(),
                    [
                        timeout(Tk::Propose, 1),
                        prevotes(1, None, &[0, 1]),
                        precommits(1, None, &[0, 1]),
                        timeout(Tk::Precommit, 1),
                        proposal(2, A, Some(1)),
                    ],
                ),
                input: valid(A),
                out: vec![],
                after: after(Step::Propose, 2),
            },
        ],
    );
}

// ---- L34: 2f+1 prevotes for anything schedule timeoutPrevote ----

#[test]
fn l34_timeout_prevote() {
    run(
        FOUR,
        vec![
            Row {
                name: "2f+1 prevotes for different values: schedule timeoutPrevote",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, Some(A), &[0]),
                ],
                input: prevotes(0, Some(B), &[1]),
                out: vec![Timeout(Tk::Prevote, 0)],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "only for the first time in a round",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, Some(A), &[0]),
                    prevotes(0, Some(B), &[1]),
                ],
                input: prevotes(0, Some(A), &[2]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "2f prevotes: nothing",
                setup: vec![start(1), timeout(Tk::Propose, 0)],
                input: prevotes(0, Some(A), &[0]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "not while in step propose",
                setup: vec![
                    start(1),
                    prevotes(0, Some(A), &[0]),
                    prevotes(0, Some(B), &[1]),
                ],
                input: prevotes(0, None, &[2]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "fires on entering step prevote when 2f+1 are already in",
                setup: vec![
                    start(1),
                    prevotes(0, Some(A), &[0]),
                    prevotes(0, Some(B), &[1]),
                ],
                input: timeout(Tk::Propose, 0),
                out: vec![Persist, Prevote(0, None), Timeout(Tk::Prevote, 0)],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "prevotes of another round do not add up",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, Some(A), &[0]),
                ],
                input: prevotes(1, Some(A), &[1]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "scheduled again in the next round",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, Some(A), &[0]),
                    prevotes(0, Some(B), &[1]),
                    timeout(Tk::Prevote, 0),
                    precommits(0, None, &[0, 1]),
                    timeout(Tk::Precommit, 0),
                    timeout(Tk::Propose, 1),
                    prevotes(1, Some(A), &[0]),
                ],
                input: prevotes(1, Some(B), &[1]),
                out: vec![Timeout(Tk::Prevote, 1)],
                after: after(Step::Prevote, 1),
            },
        ],
    );
}

// ---- L36: a polka for the proposal of round_p ----

#[test]
fn l36_lock_and_precommit() {
    run(
        FOUR,
        vec![
            Row {
                name: "polka in step prevote: lock, validValue, precommit v (L36-L43)",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    valid(A),
                    prevotes(0, Some(A), &[0]),
                ],
                input: prevotes(0, Some(A), &[1]),
                out: vec![Timeout(Tk::Prevote, 0), Persist, Precommit(0, Some(A))],
                after: after(Step::Precommit, 0).lock(0, A),
            },
            Row {
                name: "polka completing after timeoutPrevote was scheduled",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    valid(A),
                    prevotes(0, Some(A), &[0]),
                    prevotes(0, None, &[1]),
                ],
                input: prevotes(0, Some(A), &[2]),
                out: vec![Persist, Precommit(0, Some(A))],
                after: after(Step::Precommit, 0).lock(0, A),
            },
            Row {
                name: "only for the first time in a round",
                setup: locked_on_a(),
                input: prevotes(0, Some(A), &[2]),
                out: vec![],
                after: after(Step::Precommit, 0).lock(0, A),
            },
            Row {
                name: "polka in step precommit: update validValue only (L42-L43)",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    timeout(Tk::Propose, 0),
                    prevotes(0, Some(A), &[0, 1]),
                    timeout(Tk::Prevote, 0),
                    valid(A),
                ],
                input: prevotes(0, Some(A), &[2]),
                out: vec![],
                after: after(Step::Precommit, 0).valid(0, A),
            },
            Row {
                name: "polka for an invalid value: no lock",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    invalid(A),
                    prevotes(0, Some(A), &[0, 1]),
                ],
                input: prevotes(0, Some(A), &[2]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "polka for another value than the proposal's: no lock",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    valid(A),
                    prevotes(0, Some(B), &[0]),
                ],
                input: prevotes(0, Some(B), &[1, 2]),
                out: vec![Timeout(Tk::Prevote, 0)],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "polka first, proposal checked later: lock and precommit then",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, Some(A), &[0, 1, 2]),
                    proposal(0, A, None),
                ],
                input: valid(A),
                out: vec![Persist, Precommit(0, Some(A))],
                after: after(Step::Precommit, 0).lock(0, A),
            },
        ],
    );
}

// ---- L44: 2f+1 nil prevotes ----

#[test]
fn l44_precommit_nil() {
    run(
        FOUR,
        vec![
            Row {
                name: "2f+1 nil prevotes in step prevote: precommit nil (L44-L46)",
                setup: vec![start(1), timeout(Tk::Propose, 0), prevotes(0, None, &[0])],
                input: prevotes(0, None, &[1]),
                out: vec![Timeout(Tk::Prevote, 0), Persist, Precommit(0, None)],
                after: after(Step::Precommit, 0),
            },
            Row {
                name: "2f nil prevotes: nothing",
                setup: vec![start(1), timeout(Tk::Propose, 0)],
                input: prevotes(0, None, &[0]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "2f+1 prevotes of which 2f nil: timeoutPrevote only",
                setup: vec![start(1), timeout(Tk::Propose, 0), prevotes(0, None, &[0])],
                input: prevotes(0, Some(A), &[1]),
                out: vec![Timeout(Tk::Prevote, 0)],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "not while in step propose",
                setup: vec![start(1)],
                input: prevotes(0, None, &[0, 1, 2]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "in step precommit more nil prevotes change nothing",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, None, &[0, 1]),
                ],
                input: prevotes(0, None, &[2]),
                out: vec![],
                after: after(Step::Precommit, 0),
            },
        ],
    );
}

// ---- L47: 2f+1 precommits for anything schedule timeoutPrecommit ----

#[test]
fn l47_timeout_precommit() {
    run(
        FOUR,
        vec![
            Row {
                name: "2f+1 precommits for different values: schedule timeoutPrecommit (in any step)",
                setup: vec![
                    start(1),
                    precommits(0, Some(A), &[0]),
                    precommits(0, None, &[1]),
                ],
                input: precommits(0, Some(B), &[2]),
                out: vec![Timeout(Tk::Precommit, 0)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "2f precommits: nothing",
                setup: vec![start(1), precommits(0, Some(A), &[0])],
                input: precommits(0, None, &[1]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "our own precommit counts",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, None, &[0, 1]),
                    precommits(0, None, &[0]),
                ],
                input: precommits(0, Some(A), &[1]),
                out: vec![Timeout(Tk::Precommit, 0)],
                after: after(Step::Precommit, 0),
            },
            Row {
                name: "only for the first time in a round",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, None, &[0, 1]),
                    precommits(0, None, &[0]),
                    precommits(0, Some(A), &[1]),
                ],
                input: precommits(0, Some(B), &[2]),
                out: vec![],
                after: after(Step::Precommit, 0),
            },
            Row {
                name: "also while the proposal of the round is being checked (L22 pending)",
                setup: vec![start(1), proposal(0, A, None)],
                input: precommits(0, None, &[0, 1, 2]),
                out: vec![Timeout(Tk::Precommit, 0)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "also while a re-proposal with a polka is being checked (L28 pending)",
                setup: with(
                    polka_for_a_in_round_0_then_round_1(),
                    [proposal(1, A, Some(0))],
                ),
                input: precommits(1, None, &[0, 1, 2]),
                out: vec![Timeout(Tk::Precommit, 1)],
                after: after(Step::Propose, 1),
            },
            Row {
                name: "precommits of another round do not add up",
                setup: vec![start(1), precommits(0, None, &[0, 1])],
                input: precommits(1, None, &[2]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
        ],
    );
}

// ---- L49: decide on 2f+1 precommits for a proposal of any round ----

#[test]
fn l49_decide() {
    run(
        FOUR,
        vec![
            Row {
                name: "2f+1 precommits for the proposal of round_p: decide (L49-L54)",
                setup: vec![start(1), proposal(0, A, None), valid(A)],
                input: precommits(0, Some(A), &[0, 1, 2]),
                out: vec![Decide(0, A)],
                after: after(Step::Commit, 0),
            },
            Row {
                name: "our own precommit completes the quorum (and is in the commit)",
                setup: with(locked_on_a(), [precommits(0, Some(A), &[0])]),
                input: precommits(0, Some(A), &[1]),
                out: vec![Decide(0, A)],
                after: after(Step::Commit, 0).lock(0, A),
            },
            Row {
                name: "the proposal of a past round: decide in a later round",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    timeout(Tk::Propose, 0),
                    prevotes(1, None, &[0, 1]),
                    valid(A),
                ],
                input: precommits(0, Some(A), &[0, 1, 2]),
                out: vec![Decide(0, A)],
                after: after(Step::Commit, 1),
            },
            Row {
                name: "not before the value is known valid",
                setup: vec![start(1), proposal(0, A, None)],
                input: precommits(0, Some(A), &[0, 1, 2]),
                out: vec![Timeout(Tk::Precommit, 0)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "decide when the value checks out",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    precommits(0, Some(A), &[0, 1, 2]),
                ],
                input: valid(A),
                out: vec![Decide(0, A)],
                after: after(Step::Commit, 0),
            },
            Row {
                name: "not without the proposal",
                setup: vec![start(1)],
                input: precommits(0, Some(A), &[0, 1, 2]),
                out: vec![Timeout(Tk::Precommit, 0)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "decide when the proposal arrives and checks out",
                setup: vec![
                    start(1),
                    precommits(0, Some(A), &[0, 1, 2]),
                    proposal(0, A, None),
                ],
                input: valid(A),
                out: vec![Decide(0, A)],
                after: after(Step::Commit, 0),
            },
            Row {
                name: "an invalid value is never decided",
                setup: vec![start(1), proposal(0, A, None), invalid(A)],
                input: precommits(0, Some(A), &[0, 1, 2]),
                out: vec![Timeout(Tk::Precommit, 0)],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "2f precommits: no decision",
                setup: vec![start(1), proposal(0, A, None), valid(A)],
                input: precommits(0, Some(A), &[0, 1]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "after the decision, timeouts of the height are ignored",
                setup: decided_height_1(),
                input: timeout(Tk::Precommit, 0),
                out: vec![],
                after: after(Step::Commit, 0),
            },
            Row {
                name: "after the decision, messages of the height are ignored",
                setup: decided_height_1(),
                input: prevotes(1, None, &[0, 1]),
                out: vec![],
                after: after(Step::Commit, 0),
            },
        ],
    );
}

// ---- L55: round skip on f+1 messages of a higher round ----

#[test]
fn l55_round_skip() {
    run(
        FOUR,
        vec![
            Row {
                name: "f+1 validators heard in a higher round: start it (L55-L56)",
                setup: vec![start(1)],
                input: prevotes(2, None, &[0, 1]),
                out: vec![NewRound(2), Timeout(Tk::Propose, 2)],
                after: after(Step::Propose, 2),
            },
            Row {
                name: "f validators: stay",
                setup: vec![start(1)],
                input: prevotes(2, None, &[0]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a prevote and a precommit of one validator count once",
                setup: vec![start(1), prevotes(2, None, &[0])],
                input: precommits(2, None, &[0]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "an equivocating validator counts once",
                setup: vec![start(1), prevotes(2, None, &[0])],
                input: prevotes(2, Some(A), &[0]),
                out: vec![Evidence(0)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a key outside the set does not count",
                setup: vec![start(1), prevotes(2, None, &[0])],
                input: prevotes(2, None, &[X]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "the proposal of the round counts as a message of it",
                setup: vec![start(1), prevotes(2, None, &[0])],
                input: proposal(2, A, None),
                out: vec![ValidateValue(2, A), NewRound(2), Timeout(Tk::Propose, 2)],
                after: after(Step::Propose, 2),
            },
            Row {
                name: "a proposal from a non-proposer does not count",
                setup: vec![start(1), prevotes(2, None, &[1])],
                input: proposal_by_non_proposer(2, A),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "skip to the round we propose: ask for a value",
                setup: vec![start(1), prevotes(3, None, &[0])],
                input: precommits(3, None, &[1]),
                out: vec![NewRound(3), RequestValue(3), Timeout(Tk::Propose, 3)],
                after: after(Step::Propose, 3),
            },
            Row {
                name: "f+1 of a lower round: stay",
                setup: vec![
                    start(1),
                    prevotes(2, None, &[0, 1]),
                    prevotes(1, None, &[0]),
                ],
                input: prevotes(1, None, &[1]),
                out: vec![],
                after: after(Step::Propose, 2),
            },
            Row {
                name: "after the skip the votes of the new round count (L47 in round 2)",
                setup: vec![start(1), precommits(2, None, &[0, 1])],
                input: precommits(2, None, &[2]),
                out: vec![Timeout(Tk::Precommit, 2)],
                after: after(Step::Propose, 2),
            },
        ],
    );
}

// ---- L57, L61, L65: the timeouts, and stale ones ----

#[test]
fn l57_l61_l65_timeouts() {
    run(
        FOUR,
        vec![
            Row {
                name: "timeoutPropose in step propose: prevote nil (L57-L60)",
                setup: vec![start(1)],
                input: timeout(Tk::Propose, 0),
                out: vec![Persist, Prevote(0, None)],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "timeoutPropose after prevoting: ignored",
                setup: vec![start(1), timeout(Tk::Propose, 0)],
                input: timeout(Tk::Propose, 0),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "timeoutPropose of an earlier round: ignored",
                setup: vec![start(1), timeout(Tk::Precommit, 0)],
                input: timeout(Tk::Propose, 0),
                out: vec![],
                after: after(Step::Propose, 1),
            },
            Row {
                name: "timeoutPropose of a later round: ignored",
                setup: vec![start(1)],
                input: timeout(Tk::Propose, 1),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "timeoutPropose of another height: ignored",
                setup: vec![start(1)],
                input: at(2, timeout(Tk::Propose, 0)),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "timeoutPrevote in step prevote: precommit nil (L61-L64)",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, Some(A), &[0]),
                    prevotes(0, Some(B), &[1]),
                ],
                input: timeout(Tk::Prevote, 0),
                out: vec![Persist, Precommit(0, None)],
                after: after(Step::Precommit, 0),
            },
            Row {
                name: "timeoutPrevote in step propose: ignored",
                setup: vec![start(1)],
                input: timeout(Tk::Prevote, 0),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "timeoutPrevote in step precommit: ignored",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, Some(A), &[0]),
                    prevotes(0, Some(B), &[1]),
                    timeout(Tk::Prevote, 0),
                ],
                input: timeout(Tk::Prevote, 0),
                out: vec![],
                after: after(Step::Precommit, 0),
            },
            Row {
                name: "timeoutPrevote of an earlier round: ignored",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    timeout(Tk::Precommit, 0),
                    timeout(Tk::Propose, 1),
                ],
                input: timeout(Tk::Prevote, 0),
                out: vec![],
                after: after(Step::Prevote, 1),
            },
            Row {
                name: "timeoutPrecommit: start the next round (L65-L67)",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, None, &[0, 1]),
                    precommits(0, None, &[0, 1]),
                ],
                input: timeout(Tk::Precommit, 0),
                out: vec![NewRound(1), Timeout(Tk::Propose, 1)],
                after: after(Step::Propose, 1),
            },
            Row {
                name: "timeoutPrecommit into the round we propose",
                setup: vec![start(1), prevotes(2, None, &[0, 1])],
                input: timeout(Tk::Precommit, 2),
                out: vec![NewRound(3), RequestValue(3), Timeout(Tk::Propose, 3)],
                after: after(Step::Propose, 3),
            },
            Row {
                name: "timeoutPrecommit of an earlier round: ignored",
                setup: vec![start(1), timeout(Tk::Precommit, 0)],
                input: timeout(Tk::Precommit, 0),
                out: vec![],
                after: after(Step::Propose, 1),
            },
            Row {
                name: "timeoutPrecommit of a later round: ignored",
                setup: vec![start(1)],
                input: timeout(Tk::Precommit, 1),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "timeoutPrecommit of another height: ignored",
                setup: vec![start(1)],
                input: at(2, timeout(Tk::Precommit, 0)),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "timeoutPrecommit after the decision: ignored",
                setup: decided_height_1(),
                input: timeout(Tk::Precommit, 0),
                out: vec![],
                after: after(Step::Commit, 0),
            },
        ],
    );
}

/// A row of [`timeouts_grow_with_the_round`].
struct TimeoutRow {
    name: &'static str,
    setup: Vec<In>,
    input: In,
    /// The timeouts the input schedules: (kind, round, milliseconds).
    scheduled: Vec<(Tk, u32, u64)>,
}

/// Timeouts grow with the round: `base + delta * round` per kind (100+10r,
/// 200+20r, 300+30r ms in these tests).
#[test]
fn timeouts_grow_with_the_round() {
    let rows = vec![
        TimeoutRow {
            name: "propose in round 0",
            setup: vec![],
            input: start(1),
            scheduled: vec![(Tk::Propose, 0, 100)],
        },
        TimeoutRow {
            name: "propose in round 2",
            setup: vec![start(1)],
            input: prevotes(2, None, &[0, 1]),
            scheduled: vec![(Tk::Propose, 2, 120)],
        },
        TimeoutRow {
            name: "propose in round 5",
            setup: vec![start(1)],
            input: prevotes(5, None, &[0, 1]),
            scheduled: vec![(Tk::Propose, 5, 150)],
        },
        TimeoutRow {
            name: "prevote in round 0",
            setup: vec![start(1), prevotes(0, None, &[0, 1])],
            input: timeout(Tk::Propose, 0),
            scheduled: vec![(Tk::Prevote, 0, 200)],
        },
        TimeoutRow {
            name: "prevote in round 2",
            setup: vec![start(1), prevotes(2, None, &[0, 1])],
            input: timeout(Tk::Propose, 2),
            scheduled: vec![(Tk::Prevote, 2, 240)],
        },
        TimeoutRow {
            name: "precommit in round 0",
            setup: vec![start(1), precommits(0, None, &[0, 1])],
            input: precommits(0, None, &[2]),
            scheduled: vec![(Tk::Precommit, 0, 300)],
        },
        TimeoutRow {
            name: "precommit in round 2",
            setup: vec![start(1), precommits(2, None, &[0, 1])],
            input: precommits(2, None, &[2]),
            scheduled: vec![(Tk::Precommit, 2, 360)],
        },
    ];
    for row in rows {
        let mut h = Harness::new(FOUR);
        for i in &row.setup {
            h.feed(i);
        }
        let got: Vec<(Tk, u32, u64)> = h
            .feed(&row.input)
            .into_iter()
            .filter_map(|o| match o {
                Output::ScheduleTimeout { timeout, duration } => {
                    Some((timeout.kind, timeout.round.0, duration.as_millis() as u64))
                }
                _ => None,
            })
            .collect();
        assert_eq!(got, row.scheduled, "{}", row.name);
    }
}

// ---- quorum: strictly more than 2/3 of the power; f+1: more than 1/3 ----

/// Powers 3, 3, 2 (o0, o1, o2) and ours 1: total 9, so 6 is exactly 2/3 and 3 is
/// exactly 1/3.
const WEIGHTED: Cfg = Cfg {
    powers: &[3, 3, 2, 1],
    me: Me::Index(3),
};

#[test]
fn quorum_is_more_than_two_thirds_of_the_power() {
    run(
        WEIGHTED,
        vec![
            Row {
                name: "L34/L36: prevotes of 6 of 9 (exactly 2/3): no polka, no timeout",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    valid(A),
                    prevotes(0, Some(A), &[2]),
                ],
                input: prevotes(0, Some(A), &[0]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "L34/L36: prevotes of 7 of 9: polka",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    valid(A),
                    prevotes(0, Some(A), &[0]),
                ],
                input: prevotes(0, Some(A), &[1]),
                out: vec![Timeout(Tk::Prevote, 0), Persist, Precommit(0, Some(A))],
                after: after(Step::Precommit, 0).lock(0, A),
            },
            Row {
                name: "L44: nil prevotes of 6 of 9: nothing",
                setup: vec![start(1), timeout(Tk::Propose, 0), prevotes(0, None, &[2])],
                input: prevotes(0, None, &[0]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "L44: nil prevotes of 7 of 9: precommit nil",
                setup: vec![start(1), timeout(Tk::Propose, 0), prevotes(0, None, &[0])],
                input: prevotes(0, None, &[1]),
                out: vec![Timeout(Tk::Prevote, 0), Persist, Precommit(0, None)],
                after: after(Step::Precommit, 0),
            },
            Row {
                name: "L47/L49: precommits of 6 of 9: no decision, no timeout",
                setup: vec![start(1), proposal(0, A, None), valid(A)],
                input: precommits(0, Some(A), &[0, 1]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "L49: precommits of 7 of 9 (ours included): decide",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    valid(A),
                    prevotes(0, Some(A), &[0, 1]),
                    precommits(0, Some(A), &[0]),
                ],
                input: precommits(0, Some(A), &[1]),
                out: vec![Decide(0, A)],
                after: after(Step::Commit, 0).lock(0, A),
            },
            Row {
                name: "L47: precommits of 7 of 9: timeoutPrecommit",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, None, &[0, 1]),
                    precommits(0, None, &[0]),
                ],
                input: precommits(0, None, &[1]),
                out: vec![Timeout(Tk::Precommit, 0)],
                after: after(Step::Precommit, 0),
            },
            Row {
                name: "L55: 3 of 9 (exactly 1/3) in a higher round: stay",
                setup: vec![start(1)],
                input: prevotes(2, None, &[0]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "L55: 2 of 9 in a higher round: stay",
                setup: vec![start(1)],
                input: prevotes(2, None, &[2]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "L55: 5 of 9 in a higher round: skip",
                setup: vec![start(1), prevotes(2, None, &[2])],
                input: prevotes(2, None, &[0]),
                out: vec![NewRound(2), Timeout(Tk::Propose, 2)],
                after: after(Step::Propose, 2),
            },
        ],
    );
    // Three equal validators: two of them are exactly 2/3.
    const THREE: Cfg = Cfg {
        powers: &[1, 1, 1],
        me: Me::NotProposerUpTo(0),
    };
    run(
        THREE,
        vec![
            Row {
                name: "2 of 3 precommits (exactly 2/3): no decision",
                setup: vec![start(1), proposal(0, A, None), valid(A)],
                input: precommits(0, Some(A), &[0, 1]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "2 of 3 prevotes with ours: no polka",
                setup: vec![start(1), proposal(0, A, None), valid(A)],
                input: prevotes(0, Some(A), &[0]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "3 of 3 prevotes: polka",
                setup: vec![start(1), proposal(0, A, None), valid(A)],
                input: prevotes(0, Some(A), &[0, 1]),
                out: vec![Timeout(Tk::Prevote, 0), Persist, Precommit(0, Some(A))],
                after: after(Step::Precommit, 0).lock(0, A),
            },
        ],
    );
}

// ---- equivocation ----

#[test]
fn equivocation() {
    run(
        FOUR,
        vec![
            Row {
                name: "a second, different prevote: one Evidence, and it is not counted",
                setup: vec![start(1), timeout(Tk::Propose, 0), prevotes(0, None, &[0])],
                input: prevotes(0, Some(A), &[0]),
                out: vec![Evidence(0)],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "a third vote in the slot: no second Evidence",
                setup: vec![
                    start(1),
                    timeout(Tk::Propose, 0),
                    prevotes(0, None, &[0]),
                    prevotes(0, Some(A), &[0]),
                ],
                input: prevotes(0, Some(B), &[0]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "the identical vote again: nothing, counted once",
                setup: vec![start(1), timeout(Tk::Propose, 0), prevotes(0, None, &[0])],
                input: prevotes(0, None, &[0]),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "conflicting precommits: Evidence",
                setup: vec![start(1), precommits(0, Some(A), &[0])],
                input: precommits(0, Some(B), &[0]),
                out: vec![Evidence(0)],
                after: after(Step::Propose, 0),
            },
            Row {
                // The paper counts distinct senders per value: a conflicting vote
                // counts for its own value once that value has support. Two
                // values still cannot both reach a quorum unless more than a
                // third of the power equivocates.
                name: "a conflicting precommit counts for its supported value: Evidence, then the decision",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    valid(A),
                    precommits(0, None, &[0]),
                    precommits(0, Some(A), &[1, 2]),
                ],
                input: precommits(0, Some(A), &[0]),
                out: vec![Evidence(0), Decide(0, A)],
                after: after(Step::Commit, 0),
            },
            Row {
                name: "a conflicting vote for a value nobody else voted for is not counted",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    valid(A),
                    precommits(0, None, &[0]),
                    precommits(0, Some(A), &[1]),
                ],
                input: precommits(0, Some(B), &[0]),
                out: vec![Evidence(0)],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "a prevote and a precommit for different values are no equivocation",
                setup: vec![start(1), prevotes(0, Some(A), &[0])],
                input: precommits(0, None, &[0]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "votes of different rounds are no equivocation",
                setup: vec![start(1), prevotes(0, Some(A), &[0])],
                input: prevotes(1, None, &[0]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
        ],
    );
}

// ---- which proposals are taken ----

#[test]
fn proposals_taken_and_ignored() {
    run(
        FOUR,
        vec![
            Row {
                name: "from a validator that is not the round's proposer: ignored",
                setup: vec![start(1)],
                input: proposal_by_non_proposer(0, A),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "the proposer's proposal is taken after a non-proposer's",
                setup: vec![start(1), proposal_by_non_proposer(0, B)],
                input: proposal(0, A, None),
                out: vec![ValidateValue(0, A)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a proposal naming another block than it carries: ignored",
                setup: vec![start(1)],
                input: mismatched_proposal(0, A, B),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a matching proposal is taken after a mismatched one",
                setup: vec![start(1), mismatched_proposal(0, A, B)],
                input: proposal(0, A, None),
                out: vec![ValidateValue(0, A)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a mismatched proposal does not count for a round skip",
                setup: vec![start(1), prevotes(2, None, &[0])],
                input: mismatched_proposal(2, A, B),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "validRound equal to the round: ignored",
                setup: vec![start(1)],
                input: proposal(1, A, Some(1)),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "validRound above the round: ignored",
                setup: vec![start(1)],
                input: proposal(0, A, Some(2)),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a second proposal of the round: ignored",
                setup: vec![start(1), proposal(0, A, None)],
                input: proposal(0, B, None),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a proposal of a later round is kept and checked",
                setup: vec![start(1)],
                input: proposal(1, A, None),
                out: vec![ValidateValue(1, A)],
                after: after(Step::Propose, 0),
            },
        ],
    );
}

// ---- messages of the next height; rounds too far ahead ----

#[test]
fn next_height_messages_are_buffered() {
    run(
        FOUR,
        vec![
            Row {
                name: "next-height precommits are not counted in this height",
                setup: vec![start(1), proposal(0, A, None), valid(A)],
                input: at(2, precommits(0, Some(A), &[0, 1, 2])),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "buffered proposal and precommits are replayed at StartHeight",
                setup: with(
                    decided_height_1(),
                    [
                        at(2, proposal(0, B, None)),
                        at(2, precommits(0, Some(B), &[0, 1, 2])),
                    ],
                ),
                input: start(2),
                out: vec![
                    NewRound(0),
                    Timeout(Tk::Propose, 0),
                    ValidateValue(0, B),
                    Timeout(Tk::Precommit, 0),
                ],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "and decide the next height from them",
                setup: with(
                    decided_height_1(),
                    [
                        at(2, proposal(0, B, None)),
                        at(2, precommits(0, Some(B), &[0, 1, 2])),
                        start(2),
                    ],
                ),
                input: at(2, valid(B)),
                out: vec![Decide(0, B)],
                after: after(Step::Commit, 0),
            },
            Row {
                name: "a next-height proposal from a validator not its round's proposer: dropped",
                setup: with(decided_height_1(), [at(2, proposal_by_non_proposer(0, A))]),
                input: start(2),
                out: vec![NewRound(0), Timeout(Tk::Propose, 0)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "and it does not take the slot of the proposer's own",
                setup: with(
                    decided_height_1(),
                    [
                        at(2, proposal_by_non_proposer(0, A)),
                        at(2, proposal(0, B, None)),
                    ],
                ),
                input: start(2),
                out: vec![NewRound(0), Timeout(Tk::Propose, 0), ValidateValue(0, B)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a next-height proposal that does not carry its block: dropped",
                setup: with(
                    decided_height_1(),
                    [
                        at(2, mismatched_proposal(0, A, B)),
                        at(2, proposal(0, B, None)),
                    ],
                ),
                input: start(2),
                out: vec![NewRound(0), Timeout(Tk::Propose, 0), ValidateValue(0, B)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "buffered before this height is decided too",
                setup: vec![
                    start(1),
                    at(2, proposal(0, B, None)),
                    proposal(0, A, None),
                    valid(A),
                    precommits(0, Some(A), &[0, 1, 2]),
                ],
                input: start(2),
                out: vec![NewRound(0), Timeout(Tk::Propose, 0), ValidateValue(0, B)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "rounds >= FUTURE_HEIGHT_ROUNDS dropped; skip to the highest kept round",
                setup: with(
                    decided_height_1(),
                    [
                        at(2, prevotes(1, None, &[0, 1])),
                        at(2, prevotes(2, None, &[0, 1])),
                        at(2, prevotes(3, None, &[0, 1])),
                        at(2, proposal(3, B, None)),
                    ],
                ),
                input: start(2),
                out: vec![
                    NewRound(0),
                    Timeout(Tk::Propose, 0),
                    NewRound(2),
                    RequestValue(2),
                    Timeout(Tk::Propose, 2),
                ],
                after: after(Step::Propose, 2),
            },
            Row {
                name: "messages of a past height are ignored",
                setup: with(decided_height_1(), [start(2)]),
                input: prevotes(1, None, &[0, 1]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
        ],
    );
}

#[test]
fn rounds_too_far_ahead_are_dropped() {
    assert_eq!(MAX_ROUND_LEAD, 64, "the rows below use round 64 and 65");
    run(
        FOUR,
        vec![
            Row {
                name: "messages MAX_ROUND_LEAD rounds ahead count: skip to round 64",
                setup: vec![start(1)],
                input: prevotes(64, None, &[0, 1]),
                out: vec![NewRound(64), Timeout(Tk::Propose, 64)],
                after: after(Step::Propose, 64),
            },
            Row {
                name: "messages MAX_ROUND_LEAD + 1 rounds ahead: dropped",
                setup: vec![start(1)],
                input: prevotes(65, None, &[0, 1]),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a proposal MAX_ROUND_LEAD rounds ahead is kept",
                setup: vec![start(1)],
                input: proposal(64, A, None),
                out: vec![ValidateValue(64, A)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "a proposal MAX_ROUND_LEAD + 1 rounds ahead: dropped",
                setup: vec![start(1)],
                input: proposal(65, A, None),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "the lead counts from the current round",
                setup: vec![start(1), timeout(Tk::Precommit, 0)],
                input: prevotes(65, None, &[0, 1]),
                out: vec![NewRound(65), Timeout(Tk::Propose, 65)],
                after: after(Step::Propose, 65),
            },
            Row {
                name: "a dropped message is not kept for later",
                setup: vec![
                    start(1),
                    prevotes(65, None, &[0]),
                    timeout(Tk::Precommit, 0),
                ],
                input: prevotes(65, None, &[1]),
                out: vec![],
                after: after(Step::Propose, 1),
            },
        ],
    );
}

// ---- persist before send ----

/// The harness checks on every row that each freshly signed message follows a
/// `Persist` of it; this pins one persisted state down field by field.
#[test]
fn persisted_state_before_a_precommit_carries_the_new_lock() {
    let mut h = Harness::new(FOUR);
    for i in &locked_on_a()[..3] {
        h.feed(i);
    }
    let out = h.feed(&prevotes(0, Some(A), &[0, 1]));
    let [_, Output::Persist(ps), Output::BroadcastVote(v)] = &out[..] else {
        panic!("{out:?}");
    };
    let a = block(1, A).id();
    assert_eq!(v.vote_type, VoteType::Precommit);
    assert_eq!(v.block_id, Some(a));
    assert_eq!(ps.height, Height(1));
    assert_eq!(ps.round, Round(0));
    assert_eq!(ps.locked, Some((Round(0), a)));
    assert_eq!(ps.valid, Some((Round(0), a)));
    assert_eq!(ps.last_signed, Some(SignedMessage::Vote(v.clone())));
    // The block behind the valid value, our precommit, and the polka behind the
    // lock are persisted too, to be shown again after a restart.
    assert_eq!(ps.valid_block.as_ref().map(|b| b.id()), Some(a));
    let polka = ps
        .votes
        .iter()
        .filter(|x| x.vote_type == VoteType::Prevote && x.block_id == Some(a))
        .count();
    assert!(
        polka >= 3,
        "the polka behind the lock is not persisted: {:?}",
        ps.votes
    );
}

// ---- restart from the persisted state ----

#[test]
fn restart_resumes_and_never_signs_a_conflict() {
    run(
        FOUR,
        vec![
            Row {
                name: "resumes the persisted round and lock",
                setup: with(
                    locked_on_a_in_round_1(),
                    [timeout(Tk::Propose, 1), restart()],
                ),
                input: start(1),
                // The nil prevote signed in round 1 before the crash goes out again.
                out: vec![NewRound(1), Timeout(Tk::Propose, 1), Prevote(1, None)],
                after: after(Step::Prevote, 1).lock(0, A),
            },
            Row {
                name: "the restored lock holds: prevote nil for another value",
                setup: with(
                    locked_on_a(),
                    [
                        restart(),
                        start(1),
                        timeout(Tk::Precommit, 0),
                        proposal(1, B, None),
                    ],
                ),
                input: valid(B),
                out: vec![Persist, Prevote(1, None)],
                after: after(Step::Prevote, 1).lock(0, A),
            },
            Row {
                name: "prevoted v before the crash: no nil prevote in that slot",
                setup: vec![
                    start(1),
                    proposal(0, A, None),
                    valid(A),
                    restart(),
                    start(1),
                ],
                input: timeout(Tk::Propose, 0),
                out: vec![],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "prevoted v before the crash: the identical prevote is sent again",
                setup: vec![start(1), proposal(0, A, None), valid(A), restart()],
                input: start(1),
                out: vec![NewRound(0), Timeout(Tk::Propose, 0), Prevote(0, Some(A))],
                after: after(Step::Prevote, 0),
            },
            Row {
                name: "precommitted before the crash: no prevote below that slot",
                setup: with(locked_on_a(), [restart(), start(1)]),
                input: timeout(Tk::Propose, 0),
                out: vec![],
                after: after(Step::Precommit, 0).lock(0, A),
            },
            Row {
                name: "precommitted v before the crash: no nil precommit in that slot",
                setup: with(
                    locked_on_a(),
                    [restart(), start(1), timeout(Tk::Propose, 0)],
                ),
                input: timeout(Tk::Prevote, 0),
                out: vec![],
                after: after(Step::Precommit, 0).lock(0, A),
            },
            Row {
                name: "precommitted v before the crash: the identical precommit is sent again",
                setup: with(locked_on_a(), [restart()]),
                input: start(1),
                // Our prevote and precommit of the round go out again: peers may
                // need them for a quorum only they can complete.
                out: vec![
                    NewRound(0),
                    Timeout(Tk::Propose, 0),
                    Prevote(0, Some(A)),
                    Precommit(0, Some(A)),
                ],
                after: after(Step::Precommit, 0).lock(0, A),
            },
            Row {
                name: "a persisted state of an earlier height is not applied",
                setup: with(locked_on_a(), [restart()]),
                input: start(2),
                out: vec![NewRound(0), Timeout(Tk::Propose, 0)],
                after: after(Step::Propose, 0),
            },
        ],
    );
    const PROPOSER_0: Cfg = Cfg {
        powers: &[1, 1, 1, 1],
        me: Me::ProposerOf(0),
    };
    run(
        PROPOSER_0,
        vec![
            Row {
                name: "crashed after persisting its proposal: asks for a value again",
                setup: vec![start(1), value(0, A), restart_after_persist(1)],
                input: start(1),
                out: vec![NewRound(0), RequestValue(0), Timeout(Tk::Propose, 0)],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "crashed after persisting its proposal: never proposes another value",
                setup: vec![start(1), value(0, A), restart_after_persist(1), start(1)],
                input: value(0, B),
                out: vec![],
                after: after(Step::Propose, 0),
            },
            Row {
                name: "crashed after persisting its proposal: re-sends it, signs the prevote",
                setup: vec![start(1), value(0, A), restart_after_persist(1), start(1)],
                input: value(0, A),
                out: vec![Proposal(0, A, None), Persist, Prevote(0, Some(A))],
                after: after(Step::Prevote, 0),
            },
        ],
    );
}
