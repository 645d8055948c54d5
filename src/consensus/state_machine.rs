//! The Tendermint state machine of "The latest gossip on BFT consensus" (Buchman,
//! Kwon, Milosevic, arXiv:1807.04938, Algorithm 1). Comments `// Lnn` cite the
//! paper's line numbers.
//!
//! The machine is a plain value: [`Consensus::handle`] takes the current time and
//! one [`Input`] and returns the [`Output`]s to carry out, in order. It never reads
//! a clock, touches a socket or a disk, or draws a random number, so the node and
//! the deterministic simulator run the same code.
//!
//! The rules of the paper are "upon <condition> while <state>" clauses. After every
//! input the machine re-evaluates them until none fires ([`Consensus::progress`]);
//! each firing changes the step or sets a once-per-round flag, so this terminates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::io::{Input, Output, PersistedState, SignedMessage, Step, Timeout, TimeoutKind};
use super::params::Params;
use super::vote_keeper::{AddVote, VoteKeeper};
use crate::types::{
    Block, BlockId, Commit, Height, Keypair, Proposal, ProposerSchedule, PublicKey, Round,
    Timestamp, ValidatorSet, Vote, VoteType,
};

/// Messages for rounds further than this above the current round are dropped:
/// a faulty validator could otherwise make us store votes for unboundedly many
/// rounds. Honest validators never get this far apart while they can talk.
pub const MAX_ROUND_LEAD: u32 = 64;

/// Rounds of the next height whose messages are buffered until it starts.
pub const FUTURE_HEIGHT_ROUNDS: u32 = 3;

/// Whether a proposed block checked out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Validity {
    Pending,
    Valid,
    Invalid,
}

/// Flags of "for the first time" rules, reset when a round starts.
#[derive(Default, Clone, Debug)]
struct RoundFlags {
    /// L34: timeoutPrevote scheduled.
    prevote_timeout: bool,
    /// L36: lock/valid update done.
    polka_seen: bool,
    /// L47: timeoutPrecommit scheduled.
    precommit_timeout: bool,
    /// We asked the runtime for a value to propose.
    awaiting_value: bool,
}

/// Key of a buffered next-height message, so each is kept once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FutureKey {
    Proposal(Round),
    Vote(PublicKey, Round, VoteType),
}

/// The consensus state of one node.
#[derive(Clone, Debug)]
pub struct Consensus {
    chain_id: String,
    validators: ValidatorSet,
    /// Our key, if it is a validator's.
    key: Option<Keypair>,
    timeouts: super::params::Timeouts,
    schedule: ProposerSchedule,

    // h_p, round_p, step_p, and the locks of the paper.
    height: Height,
    round: Round,
    step: Step,
    locked: Option<(Round, BlockId)>,
    valid: Option<(Round, BlockId)>,
    last_block_time: Timestamp,

    // What we know of the current height.
    proposals: BTreeMap<Round, Proposal>,
    blocks: HashMap<BlockId, Arc<Block>>,
    validity: HashMap<BlockId, Validity>,
    votes: VoteKeeper,
    flags: RoundFlags,

    /// The last message we signed: never sign anything in an earlier slot, nor
    /// anything different in the same slot.
    last_signed: Option<SignedMessage>,
    /// State restored after a restart, applied when its height starts.
    restored: Option<PersistedState>,
    /// Messages of the next height, replayed when it starts.
    future: BTreeMap<FutureKey, Input>,
}

impl Consensus {
    /// A state machine that has not started a height yet. `restored` is the state
    /// persisted before a crash, if any: the machine resumes its round and lock and
    /// never signs a message conflicting with its last signed one.
    pub fn new(params: Params, restored: Option<PersistedState>) -> Consensus {
        let key = params
            .key
            .filter(|k| params.validators.get(&k.public()).is_some());
        Consensus {
            schedule: ProposerSchedule::genesis(&params.validators),
            chain_id: params.chain_id,
            validators: params.validators,
            key,
            timeouts: params.timeouts,
            height: Height(0),
            round: Round::ZERO,
            step: Step::Propose,
            locked: None,
            valid: None,
            last_block_time: Timestamp(0),
            proposals: BTreeMap::new(),
            blocks: HashMap::new(),
            validity: HashMap::new(),
            votes: VoteKeeper::default(),
            flags: RoundFlags::default(),
            last_signed: restored.as_ref().and_then(|r| r.last_signed.clone()),
            restored,
            future: BTreeMap::new(),
        }
    }

    /// Feeds one input; returns the effects to carry out, in order.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.apply(now, input, &mut out);
        self.progress(now, &mut out);
        out
    }

    fn apply(&mut self, now: Timestamp, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::StartHeight {
                height,
                last_block_time,
            } => self.start_height(now, height, last_block_time, out),
            Input::Proposal { proposal, block } => self.on_proposal(proposal, block, out),
            Input::Vote(vote) => self.on_vote(vote, out),
            Input::Timeout(t) => self.on_timeout(now, t, out),
            Input::ProposeValue {
                height,
                round,
                block,
            } => {
                if height == self.height
                    && round == self.round
                    && self.step == Step::Propose
                    && self.flags.awaiting_value
                {
                    self.flags.awaiting_value = false;
                    self.propose(now, block, None, out);
                }
            }
            Input::ValueValidity {
                height,
                block_id,
                valid,
            } => {
                if height == self.height && self.blocks.contains_key(&block_id) {
                    let v = if valid {
                        Validity::Valid
                    } else {
                        Validity::Invalid
                    };
                    self.validity.insert(block_id, v);
                }
            }
        }
    }

    // ---- accessors for the runtime (gossip, status, metrics) ----

    /// Current height (0 before the first [`Input::StartHeight`]).
    pub fn height(&self) -> Height {
        self.height
    }

    /// Current round.
    pub fn round(&self) -> Round {
        self.round
    }

    /// Current step.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// Our public key if we vote.
    pub fn our_key(&self) -> Option<PublicKey> {
        self.key.as_ref().map(|k| k.public())
    }

    /// lockedRound/lockedValue.
    pub fn locked(&self) -> Option<(Round, BlockId)> {
        self.locked
    }

    /// validRound/validValue.
    pub fn valid(&self) -> Option<(Round, BlockId)> {
        self.valid
    }

    /// The proposer of `round` at the current height.
    pub fn proposer(&self, round: Round) -> PublicKey {
        let i = self.schedule.proposer_index(round.0);
        self.validators.validators()[i].public_key
    }

    /// The proposer of `round` at `height`, for this height or the next one
    /// (whose messages are buffered); `None` for any other height.
    pub fn proposer_at(&self, height: Height, round: Round) -> Option<PublicKey> {
        if height == self.height {
            return Some(self.proposer(round));
        }
        if self.height.0 == 0 || height != self.height.next() {
            return None;
        }
        let mut next = self.schedule.clone();
        next.advance_height();
        let i = next.proposer_index(round.0);
        Some(self.validators.validators()[i].public_key)
    }

    /// The proposal of `round` at this height and its block, if received.
    pub fn proposal(&self, round: Round) -> Option<(&Proposal, &Arc<Block>)> {
        let p = self.proposals.get(&round)?;
        let b = self.blocks.get(&p.block_id)?;
        Some((p, b))
    }

    /// Votes of one type in one round of this height.
    pub fn votes(&self, round: Round, vote_type: VoteType) -> Vec<&Vote> {
        self.votes
            .tally(round, vote_type)
            .map(|t| t.votes().collect())
            .unwrap_or_default()
    }

    /// The last message we signed.
    pub fn last_signed(&self) -> Option<&SignedMessage> {
        self.last_signed.as_ref()
    }

    // ---- StartRound (L11) and proposing ----

    fn start_height(
        &mut self,
        now: Timestamp,
        height: Height,
        last_block_time: Timestamp,
        out: &mut Vec<Output>,
    ) {
        if height.0 == 0 || (self.height.0 != 0 && height <= self.height) {
            return;
        }
        if self.schedule.height() <= height.0 {
            while self.schedule.height() < height.0 {
                self.schedule.advance_height();
            }
        } else {
            self.schedule = ProposerSchedule::at_height(&self.validators, height.0);
        }
        self.height = height;
        self.last_block_time = last_block_time;
        self.locked = None;
        self.valid = None;
        self.proposals.clear();
        self.blocks.clear();
        self.validity.clear();
        self.votes = VoteKeeper::default();
        let mut round = Round::ZERO;
        let mut resumed: Vec<Vote> = Vec::new();
        // After a crash: resume the round and the locks we had persisted.
        if let Some(r) = self.restored.take() {
            if r.height == height {
                round = r.round;
                self.locked = r.locked;
                self.valid = r.valid;
                // The polkas behind the lock and the valid value, our votes of the
                // round, and the valid block (checked before we voted for it), so
                // that we can show them and propose the block again.
                let us = self.our_key();
                for v in r.votes {
                    if v.height != height {
                        continue;
                    }
                    if Some(v.validator) == us && v.round == round {
                        resumed.push(v.clone());
                    }
                    self.votes.add(&self.validators, v);
                }
                if let (Some((_, id)), Some(b)) = (r.valid, r.valid_block) {
                    if b.id() == id {
                        self.blocks.insert(id, b);
                        self.validity.insert(id, Validity::Valid);
                    }
                }
                if let Some(SignedMessage::Vote(v)) = r.last_signed {
                    if v.height == height && v.round == round && !resumed.contains(&v) {
                        resumed.push(v);
                    }
                }
            } else if r.height > height {
                self.restored = Some(r);
            }
        }
        self.start_round(now, round, out); // L10
        // Our votes of this round signed before the crash may never have left the
        // node (a crash between persist and send), or only we may still hold them.
        // Peers may need them for a quorum that nothing else can complete, and we
        // can never sign others in their slots: count them, send them again, and
        // resume at the step after the last.
        resumed.sort_by_key(|v| v.vote_type);
        for v in resumed {
            self.step = self.step.max(match v.vote_type {
                VoteType::Prevote => Step::Prevote,
                VoteType::Precommit => Step::Precommit,
            });
            self.votes.add(&self.validators, v.clone());
            out.push(Output::BroadcastVote(v));
        }
        let buffered = std::mem::take(&mut self.future);
        for (_, input) in buffered {
            self.apply(now, input, out);
        }
    }

    /// StartRound(round), L11-L21.
    fn start_round(&mut self, now: Timestamp, round: Round, out: &mut Vec<Output>) {
        self.round = round; // L12
        self.step = Step::Propose; // L13
        self.flags = RoundFlags::default();
        out.push(Output::NewRound {
            height: self.height,
            round,
        });
        if self.is_our_turn(round) {
            // L14-L19: re-propose validValue if we have one, else ask for a value.
            let revalid = self
                .valid
                .and_then(|(vr, id)| self.blocks.get(&id).map(|b| (vr, b.clone())));
            match revalid {
                Some((vr, block)) => self.propose(now, block, Some(vr), out),
                None => {
                    self.flags.awaiting_value = true;
                    out.push(Output::RequestValue {
                        height: self.height,
                        round,
                    });
                }
            }
        }
        // L21. The proposer schedules it too: if its own value never comes, the
        // round still moves on.
        self.schedule_timeout(TimeoutKind::Propose, out);
    }

    fn is_our_turn(&self, round: Round) -> bool {
        self.our_key() == Some(self.proposer(round))
    }

    /// L19: broadcast ⟨PROPOSAL, h_p, round_p, proposal, validRound_p⟩.
    fn propose(
        &mut self,
        now: Timestamp,
        block: Arc<Block>,
        pol_round: Option<Round>,
        out: &mut Vec<Output>,
    ) {
        let Some(key) = &self.key else { return };
        let id = block.id();
        let slot = (self.height, self.round, 0u8);
        if let Some(last) = &self.last_signed {
            if slot < last.slot() {
                return;
            }
            if slot == last.slot() {
                // Signed this slot before a restart: only the very same proposal may go out.
                if let SignedMessage::Proposal(p) = last {
                    if p.block_id == id && p.pol_round == pol_round {
                        let p = p.clone();
                        self.accept_own_proposal(p.clone(), block.clone());
                        out.push(Output::BroadcastProposal { proposal: p, block });
                    }
                }
                return;
            }
        }
        let time = self.vote_time(now);
        let p = Proposal::new_signed(
            key,
            &self.chain_id,
            self.height,
            self.round,
            pol_round,
            id,
            time,
        );
        self.last_signed = Some(SignedMessage::Proposal(p.clone()));
        out.push(Output::Persist(self.persisted()));
        self.accept_own_proposal(p.clone(), block.clone());
        out.push(Output::BroadcastProposal { proposal: p, block });
    }

    fn accept_own_proposal(&mut self, p: Proposal, block: Arc<Block>) {
        let id = p.block_id;
        self.votes
            .note_sender(&self.validators, p.round, p.proposer);
        self.proposals.entry(p.round).or_insert(p);
        self.blocks.insert(id, block);
        self.validity.insert(id, Validity::Valid);
    }

    // ---- receiving messages ----

    fn on_proposal(&mut self, p: Proposal, block: Arc<Block>, out: &mut Vec<Output>) {
        if self.height.0 != 0 && p.height == self.height.next() {
            // One slot per round, kept for the round's proposer alone: anyone
            // else's proposal taking it would cost the next height that round.
            if p.round.0 < FUTURE_HEIGHT_ROUNDS
                && self.proposer_at(p.height, p.round) == Some(p.proposer)
                && block.id() == p.block_id
            {
                self.future
                    .entry(FutureKey::Proposal(p.round))
                    .or_insert(Input::Proposal { proposal: p, block });
            }
            return;
        }
        if p.height != self.height || self.step == Step::Commit {
            return;
        }
        if p.round.0 > self.round.0.saturating_add(MAX_ROUND_LEAD) {
            return;
        }
        // The proposal must come from the round's proposer, carry a validRound
        // below its round, and name the block it travels with.
        if p.proposer != self.proposer(p.round)
            || p.pol_round.is_some_and(|vr| vr >= p.round)
            || block.id() != p.block_id
        {
            return;
        }
        if self.proposals.contains_key(&p.round) {
            return;
        }
        let id = p.block_id;
        let round = p.round;
        self.votes.note_sender(&self.validators, round, p.proposer);
        self.proposals.insert(round, p);
        self.blocks.entry(id).or_insert_with(|| block.clone());
        if let std::collections::hash_map::Entry::Vacant(e) = self.validity.entry(id) {
            e.insert(Validity::Pending);
            out.push(Output::ValidateValue {
                height: self.height,
                round,
                block,
            });
        }
    }

    fn on_vote(&mut self, vote: Vote, out: &mut Vec<Output>) {
        if self.height.0 != 0 && vote.height == self.height.next() {
            if vote.round.0 < FUTURE_HEIGHT_ROUNDS && self.validators.get(&vote.validator).is_some()
            {
                self.future
                    .entry(FutureKey::Vote(vote.validator, vote.round, vote.vote_type))
                    .or_insert(Input::Vote(vote));
            }
            return;
        }
        if vote.height != self.height || self.step == Step::Commit {
            return;
        }
        if vote.round.0 > self.round.0.saturating_add(MAX_ROUND_LEAD) {
            return;
        }
        if let AddVote::Equivocation(ev) = self.votes.add(&self.validators, vote) {
            out.push(Output::Evidence(ev));
        }
    }

    // ---- timeouts, L57-L67 ----

    fn on_timeout(&mut self, now: Timestamp, t: Timeout, out: &mut Vec<Output>) {
        if t.height != self.height || t.round != self.round {
            return;
        }
        match t.kind {
            // L57: OnTimeoutPropose
            TimeoutKind::Propose if self.step == Step::Propose => {
                self.vote(now, VoteType::Prevote, None, out); // L59
                self.step = Step::Prevote; // L60
            }
            // L61: OnTimeoutPrevote
            TimeoutKind::Prevote if self.step == Step::Prevote => {
                self.vote(now, VoteType::Precommit, None, out); // L63
                self.step = Step::Precommit; // L64
            }
            // L65: OnTimeoutPrecommit
            TimeoutKind::Precommit if self.step != Step::Commit => {
                self.start_round(now, self.round.next(), out); // L67
            }
            _ => {}
        }
    }

    fn schedule_timeout(&self, kind: TimeoutKind, out: &mut Vec<Output>) {
        let r = self.round.0;
        let duration = match kind {
            TimeoutKind::Propose => self.timeouts.propose.at(r),
            TimeoutKind::Prevote => self.timeouts.prevote.at(r),
            TimeoutKind::Precommit => self.timeouts.precommit.at(r),
        };
        out.push(Output::ScheduleTimeout {
            timeout: Timeout {
                height: self.height,
                round: self.round,
                kind,
            },
            duration,
        });
    }

    // ---- the upon-rules ----

    /// Fires rules until none applies.
    fn progress(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        while self.height.0 != 0 && self.step != Step::Commit && self.fire_one(now, out) {}
    }

    fn validity_of(&self, id: &BlockId) -> Option<bool> {
        match self.validity.get(id) {
            Some(Validity::Valid) => Some(true),
            Some(Validity::Invalid) => Some(false),
            _ => None,
        }
    }

    fn quorum(&self, power: u64) -> bool {
        self.validators.is_quorum(power)
    }

    /// Fires the first applicable rule; false if none applies.
    fn fire_one(&mut self, now: Timestamp, out: &mut Vec<Output>) -> bool {
        // L49: upon ⟨PROPOSAL, h_p, r, v, ∗⟩ AND 2f+1 ⟨PRECOMMIT, h_p, r, id(v)⟩
        // while decision_p[h_p] = nil, for a round r of any value.
        if self.try_decide(out) {
            return true;
        }
        // L55: upon f+1 ⟨∗, h_p, round, ∗, ∗⟩ with round > round_p: StartRound(round).
        if let Some(r) = self.votes.skip_target(&self.validators, self.round) {
            self.start_round(now, r, out);
            return true;
        }
        let round = self.round;
        if self.step == Step::Propose {
            if let Some(p) = self.proposals.get(&round) {
                let id = p.block_id;
                match p.pol_round {
                    // L22: upon ⟨PROPOSAL, h_p, round_p, v, −1⟩ while step_p = propose
                    // Until the runtime answers ValidateValue neither L22 nor L28
                    // applies, but the rules below (L47) still do.
                    None => {
                        if let Some(valid) = self.validity_of(&id) {
                            // L23: valid(v) ∧ (lockedRound_p = −1 ∨ lockedValue_p = v)
                            let ok = valid && self.locked.is_none_or(|(_, lv)| lv == id);
                            let value = ok.then_some(id);
                            self.vote(now, VoteType::Prevote, value, out); // L24 / L26
                            self.step = Step::Prevote; // L27
                            return true;
                        }
                    }
                    // L28: upon ⟨PROPOSAL, h_p, round_p, v, vr⟩ AND 2f+1
                    // ⟨PREVOTE, h_p, vr, id(v)⟩ while step_p = propose ∧ (vr ≥ 0 ∧ vr < round_p)
                    Some(vr) if vr < round => {
                        let polka =
                            self.quorum(self.votes.power_for(vr, VoteType::Prevote, Some(&id)));
                        if let (true, Some(valid)) = (polka, self.validity_of(&id)) {
                            // L29: valid(v) ∧ (lockedRound_p ≤ vr ∨ lockedValue_p = v)
                            let ok =
                                valid && self.locked.is_none_or(|(lr, lv)| lr <= vr || lv == id);
                            let value = ok.then_some(id);
                            self.vote(now, VoteType::Prevote, value, out); // L30 / L32
                            self.step = Step::Prevote; // L33
                            return true;
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        if self.step == Step::Prevote {
            // L34: upon 2f+1 ⟨PREVOTE, h_p, round_p, ∗⟩ while step_p = prevote for the
            // first time: schedule OnTimeoutPrevote.
            if !self.flags.prevote_timeout
                && self.quorum(self.votes.power_any(round, VoteType::Prevote))
            {
                self.flags.prevote_timeout = true;
                self.schedule_timeout(TimeoutKind::Prevote, out);
                return true;
            }
        }
        // L36: upon ⟨PROPOSAL, h_p, round_p, v, ∗⟩ AND 2f+1 ⟨PREVOTE, h_p, round_p, id(v)⟩
        // while valid(v) ∧ step_p ≥ prevote for the first time.
        if !self.flags.polka_seen && self.step >= Step::Prevote {
            if let Some(id) = self.proposals.get(&round).map(|p| p.block_id) {
                let polka = self.quorum(self.votes.power_for(round, VoteType::Prevote, Some(&id)));
                if polka && self.validity_of(&id) == Some(true) {
                    self.flags.polka_seen = true;
                    if self.step == Step::Prevote {
                        self.locked = Some((round, id)); // L38-L39
                        self.valid = Some((round, id)); // L42-L43, persisted with the precommit
                        self.vote(now, VoteType::Precommit, Some(id), out); // L40
                        self.step = Step::Precommit; // L41
                    } else {
                        self.valid = Some((round, id)); // L42-L43
                    }
                    return true;
                }
            }
        }
        if self.step == Step::Prevote {
            // L44: upon 2f+1 ⟨PREVOTE, h_p, round_p, nil⟩ while step_p = prevote
            if self.quorum(self.votes.power_for(round, VoteType::Prevote, None)) {
                self.vote(now, VoteType::Precommit, None, out); // L45
                self.step = Step::Precommit; // L46
                return true;
            }
        }
        // L47: upon 2f+1 ⟨PRECOMMIT, h_p, round_p, ∗⟩ for the first time:
        // schedule OnTimeoutPrecommit.
        if !self.flags.precommit_timeout
            && self.quorum(self.votes.power_any(round, VoteType::Precommit))
        {
            self.flags.precommit_timeout = true;
            self.schedule_timeout(TimeoutKind::Precommit, out);
            return true;
        }
        false
    }

    /// L49-L54: decide a value that has +2/3 precommits in some round, once we hold
    /// the block and know it is valid.
    fn try_decide(&mut self, out: &mut Vec<Output>) -> bool {
        let rounds: Vec<Round> = self.votes.rounds().collect();
        for r in rounds {
            let Some(tally) = self.votes.tally(r, VoteType::Precommit) else {
                continue;
            };
            let Some(Some(id)) = tally.quorum_value(&self.validators) else {
                continue;
            };
            // L49 names the proposal of round r; any block with the id is that value.
            let Some(block) = self.blocks.get(&id).cloned() else {
                continue;
            };
            // L50: if valid(v)
            if self.validity_of(&id) != Some(true) {
                continue;
            }
            let commit = Commit::from_precommits(self.height, r, id, tally.votes());
            self.step = Step::Commit; // decision_p[h_p] = v (L51)
            out.push(Output::Decide {
                height: self.height,
                round: r,
                block,
                commit,
            });
            return true;
        }
        false
    }

    // ---- signing, guarded by the last signed slot ----

    /// Our votes are stamped after the previous block's time, so block time grows.
    fn vote_time(&self, now: Timestamp) -> Timestamp {
        now.max(self.last_block_time.plus_millis(1))
    }

    /// Signs and broadcasts a vote, unless that would conflict with what we signed
    /// before (possibly before a crash). The persisted state goes out first.
    fn vote(
        &mut self,
        now: Timestamp,
        vote_type: VoteType,
        block_id: Option<BlockId>,
        out: &mut Vec<Output>,
    ) {
        let Some(key) = &self.key else { return };
        let step = match vote_type {
            VoteType::Prevote => 1u8,
            VoteType::Precommit => 2u8,
        };
        let slot = (self.height, self.round, step);
        if let Some(last) = &self.last_signed {
            if slot < last.slot() {
                return;
            }
            if slot == last.slot() {
                // Re-send the identical vote; never sign a different one.
                if let SignedMessage::Vote(v) = last {
                    if v.block_id == block_id {
                        let v = v.clone();
                        self.votes.add(&self.validators, v.clone());
                        out.push(Output::BroadcastVote(v));
                    }
                }
                return;
            }
        }
        let time = self.vote_time(now);
        let vote = Vote::new_signed(
            key,
            &self.chain_id,
            vote_type,
            self.height,
            self.round,
            block_id,
            time,
        );
        self.last_signed = Some(SignedMessage::Vote(vote.clone()));
        out.push(Output::Persist(self.persisted()));
        self.votes.add(&self.validators, vote.clone());
        out.push(Output::BroadcastVote(vote));
    }

    fn persisted(&self) -> PersistedState {
        let mut votes: Vec<Vote> = Vec::new();
        for (r, id) in [self.locked, self.valid].into_iter().flatten() {
            if let Some(t) = self.votes.tally(r, VoteType::Prevote) {
                votes.extend(t.votes().filter(|v| v.block_id == Some(id)).cloned());
            }
        }
        if let Some(us) = self.our_key() {
            for r in self.votes.rounds() {
                for t in [VoteType::Prevote, VoteType::Precommit] {
                    if let Some(v) = self.votes.tally(r, t).and_then(|tally| tally.vote_of(&us)) {
                        votes.push(v.clone());
                    }
                }
            }
        }
        votes.sort_by_key(|v| (v.round, v.vote_type, v.validator));
        votes.dedup_by(|a, b| {
            (a.round, a.vote_type, a.validator) == (b.round, b.vote_type, b.validator)
        });
        PersistedState {
            height: self.height,
            round: self.round,
            locked: self.locked,
            valid: self.valid,
            last_signed: self.last_signed.clone(),
            votes,
            valid_block: self.valid.and_then(|(_, id)| self.blocks.get(&id).cloned()),
        }
    }
}

/// Regressions found by the deterministic simulator (`tests/simulation.rs`), as
/// tables of inputs and the votes they must (or must not) produce.
#[cfg(test)]
mod simulator_regressions {
    use super::*;
    use crate::consensus::params::Timeouts;
    use crate::types::{Hash, Header};

    const CHAIN: &str = "c";

    /// A vote sent: (type, round, value).
    type VoteOut = (VoteType, u32, Option<BlockId>);
    /// A row of a table: an input and the votes it must send.
    type Row = (Input, Vec<VoteOut>);

    fn keys() -> Vec<Keypair> {
        (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect()
    }

    fn set(keys: &[Keypair]) -> ValidatorSet {
        ValidatorSet::equal_power(keys)
    }

    fn machine(keys: &[Keypair], us: usize, restored: Option<PersistedState>) -> Consensus {
        Consensus::new(
            Params {
                chain_id: CHAIN.into(),
                validators: set(keys),
                key: Some(keys[us].clone()),
                timeouts: Timeouts::default(),
            },
            restored,
        )
    }

    fn block(proposer: &Keypair) -> Arc<Block> {
        Arc::new(Block {
            header: Header {
                chain_id: CHAIN.into(),
                height: Height(1),
                time: Timestamp(1),
                last_block_id: None,
                last_commit_hash: Hash::ZERO,
                data_hash: Block::data_hash_of(&[]),
                app_hash: Hash::ZERO,
                validators_hash: Hash::ZERO,
                evidence_hash: Block::evidence_hash_of(&[]),
                proposer: proposer.public(),
            },
            txs: vec![],
            last_commit: None,
            evidence: vec![],
        })
    }

    fn vote(k: &Keypair, t: VoteType, round: u32, id: Option<BlockId>) -> Vote {
        Vote::new_signed(k, CHAIN, t, Height(1), Round(round), id, Timestamp(10))
    }

    fn start() -> Input {
        Input::StartHeight {
            height: Height(1),
            last_block_time: Timestamp(0),
        }
    }

    /// The votes among `outs`, as (type, round, value).
    fn votes_out(outs: &[Output]) -> Vec<VoteOut> {
        outs.iter()
            .filter_map(|o| match o {
                Output::BroadcastVote(v) => Some((v.vote_type, v.round.0, v.block_id)),
                _ => None,
            })
            .collect()
    }

    /// A validator crashed after persisting its precommit and before sending it.
    /// After the restart nothing else can complete the precommit quorum of its
    /// round (the others already precommitted and are waiting for +2/3 precommits
    /// to start their precommit timeout): the restarted node must send that
    /// precommit again and not redo the steps before it. It used to resume at the
    /// propose step with its vote forgotten, and the height stalled for good.
    #[test]
    fn restart_resends_the_vote_persisted_before_the_crash() {
        let ks = keys();
        let us = (0..4)
            .find(|i| machine(&ks, *i, None).proposer(Round(0)) != ks[*i].public())
            .unwrap();
        let proposer = (0..4)
            .find(|i| ks[*i].public() == machine(&ks, us, None).proposer(Round(0)))
            .unwrap();
        let others: Vec<usize> = (0..4).filter(|i| *i != us && *i != proposer).collect();
        let b = block(&ks[proposer]);
        let id = b.id();
        let ours = vote(&ks[us], VoteType::Precommit, 0, None);
        let restored = PersistedState {
            height: Height(1),
            round: Round(0),
            locked: None,
            valid: None,
            last_signed: Some(SignedMessage::Vote(ours.clone())),
            votes: vec![],
            valid_block: None,
        };
        let mut c = machine(&ks, us, Some(restored));
        let proposal = Proposal::new_signed(
            &ks[proposer],
            CHAIN,
            Height(1),
            Round(0),
            None,
            id,
            Timestamp(5),
        );
        // (input, votes it must send)
        let table: Vec<Row> = vec![
            (start(), vec![(VoteType::Precommit, 0, None)]),
            (
                Input::Proposal {
                    proposal,
                    block: b.clone(),
                },
                vec![],
            ),
            (
                Input::ValueValidity {
                    height: Height(1),
                    block_id: id,
                    valid: true,
                },
                vec![],
            ),
            // A polka for the block: we precommitted nil already, nothing to sign.
            (
                Input::Vote(vote(&ks[proposer], VoteType::Prevote, 0, Some(id))),
                vec![],
            ),
            (
                Input::Vote(vote(&ks[others[0]], VoteType::Prevote, 0, Some(id))),
                vec![],
            ),
            (
                Input::Vote(vote(&ks[others[1]], VoteType::Prevote, 0, Some(id))),
                vec![],
            ),
        ];
        for (i, (input, expected)) in table.into_iter().enumerate() {
            let outs = c.handle(Timestamp(20), input);
            assert_eq!(votes_out(&outs), expected, "row {i}: {outs:?}");
            assert!(
                !outs.iter().any(|o| matches!(o, Output::Persist(_))),
                "row {i}: nothing new may be signed: {outs:?}"
            );
            assert_eq!(c.step(), Step::Precommit, "row {i}");
        }
        // Our resent precommit counts: with two more, the precommit timeout starts.
        c.handle(
            Timestamp(20),
            Input::Vote(vote(&ks[proposer], VoteType::Precommit, 0, None)),
        );
        let outs = c.handle(
            Timestamp(20),
            Input::Vote(vote(&ks[others[0]], VoteType::Precommit, 0, Some(id))),
        );
        assert!(
            outs.iter().any(|o| matches!(
                o,
                Output::ScheduleTimeout {
                    timeout: Timeout {
                        kind: TimeoutKind::Precommit,
                        ..
                    },
                    ..
                }
            )),
            "{outs:?}"
        );
    }

    /// An equivocating validator's prevote for the block reaches us after its nil
    /// prevote. Another correct node counted the block vote, saw a polka, and
    /// re-proposes the block with that valid round. We must count the conflicting
    /// vote for its own value, or we never see the polka of L28 and, with locked
    /// validators refusing every other value, the height stalls for good.
    #[test]
    fn conflicting_vote_counts_for_the_polka_of_a_valid_round() {
        let ks = keys();
        let probe = machine(&ks, 0, None);
        // A round above 0 whose proposer is not us (validator 0).
        let round = (1..8u32)
            .find(|r| probe.proposer(Round(*r)) != ks[0].public())
            .unwrap();
        let proposer = (0..4)
            .find(|i| ks[*i].public() == probe.proposer(Round(round)))
            .unwrap();
        let rest: Vec<usize> = (1..4).filter(|i| *i != proposer).collect();
        let byzantine = rest[0];
        let b = block(&ks[proposer]);
        let id = b.id();
        let mut c = machine(&ks, 0, None);
        let proposal = Proposal::new_signed(
            &ks[proposer],
            CHAIN,
            Height(1),
            Round(round),
            Some(Round(0)),
            id,
            Timestamp(5),
        );
        let table: Vec<Row> = vec![
            (start(), vec![]),
            // The equivocator's nil prevote arrives first...
            (
                Input::Vote(vote(&ks[byzantine], VoteType::Prevote, 0, None)),
                vec![],
            ),
            // ...then the polka of round 0 that another node saw.
            (
                Input::Vote(vote(&ks[proposer], VoteType::Prevote, 0, Some(id))),
                vec![],
            ),
            (
                Input::Vote(vote(&ks[byzantine], VoteType::Prevote, 0, Some(id))),
                vec![],
            ),
            (
                Input::Vote(vote(&ks[rest[1]], VoteType::Prevote, 0, Some(id))),
                vec![],
            ),
            // f+1 precommits of `round` take us there (L55).
            (
                Input::Vote(vote(&ks[rest[1]], VoteType::Precommit, round, None)),
                vec![],
            ),
            (
                Input::Vote(vote(&ks[byzantine], VoteType::Precommit, round, None)),
                vec![],
            ),
            (
                Input::Proposal {
                    proposal,
                    block: b.clone(),
                },
                vec![],
            ),
            // L28: the re-proposed block has a polka in its valid round.
            (
                Input::ValueValidity {
                    height: Height(1),
                    block_id: id,
                    valid: true,
                },
                vec![(VoteType::Prevote, round, Some(id))],
            ),
        ];
        for (i, (input, expected)) in table.into_iter().enumerate() {
            let outs = c.handle(Timestamp(20), input);
            assert_eq!(votes_out(&outs), expected, "row {i}: {outs:?}");
        }
    }

    /// A validator locked on a block in round 0 crashed and lost the votes of
    /// that polka; one of them came from a validator that then went silent. Back
    /// up, it refused every fresh value (locked) while the others could never
    /// check its polka to accept its block, so the height stalled for good. It
    /// must come back with the polka and the block, and re-propose the block with
    /// its valid round when its turn comes.
    #[test]
    fn restart_keeps_the_polka_and_block_of_the_lock() {
        let ks = keys();
        let probe = machine(&ks, 0, None);
        let round = (1..8u32)
            .find(|r| probe.proposer(Round(*r)) == ks[0].public())
            .unwrap();
        let b = block(&ks[1]);
        let id = b.id();
        let polka: Vec<Vote> = (0..3)
            .map(|i| vote(&ks[i], VoteType::Prevote, 0, Some(id)))
            .collect();
        let ours = vote(&ks[0], VoteType::Precommit, round - 1, None);
        let restored = PersistedState {
            height: Height(1),
            round: Round(round - 1),
            locked: Some((Round(0), id)),
            valid: Some((Round(0), id)),
            last_signed: Some(SignedMessage::Vote(ours.clone())),
            votes: polka.clone(),
            valid_block: Some(b.clone()),
        };
        let mut c = machine(&ks, 0, Some(restored));
        c.handle(Timestamp(20), start());
        assert_eq!(c.votes(Round(0), VoteType::Prevote).len(), 3);
        // f+1 messages of `round` take us there (L55), where we propose.
        c.handle(
            Timestamp(20),
            Input::Vote(vote(&ks[1], VoteType::Prevote, round, None)),
        );
        let outs = c.handle(
            Timestamp(20),
            Input::Vote(vote(&ks[2], VoteType::Prevote, round, None)),
        );
        let proposed: Vec<(Option<Round>, BlockId)> = outs
            .iter()
            .filter_map(|o| match o {
                Output::BroadcastProposal { proposal, .. } => {
                    Some((proposal.pol_round, proposal.block_id))
                }
                _ => None,
            })
            .collect();
        assert_eq!(proposed, vec![(Some(Round(0)), id)], "{outs:?}");
        // And what we persist with it still carries the polka and the block (and
        // our vote of the earlier round).
        let persisted = outs.iter().find_map(|o| match o {
            Output::Persist(p) => Some(p.clone()),
            _ => None,
        });
        let persisted = persisted.expect("persisted before the proposal");
        let mut expected = polka;
        expected.sort_by_key(|v| v.validator);
        expected.push(ours);
        assert_eq!(persisted.votes, expected);
        assert_eq!(persisted.valid_block, Some(b));
    }

    /// Every validator that prevoted in the round crashed and came back knowing
    /// only its precommit; the one that had not precommitted yet lost the others'
    /// prevotes in its own crash. It waited for +2/3 prevotes that nobody held
    /// any more, the others waited for its precommit: stalled for good. Our own
    /// votes of the round are persisted and sent again after a restart.
    #[test]
    fn restart_resends_all_our_votes_of_the_round() {
        let ks = keys();
        let id = block(&ks[1]).id();
        let prevote = vote(&ks[0], VoteType::Prevote, 0, Some(id));
        let precommit = vote(&ks[0], VoteType::Precommit, 0, None);
        let mut before = machine(&ks, 0, None);
        before.handle(Timestamp(1), start());
        // What we persist when we precommit holds our prevote of the round too.
        before.votes.add(&before.validators, prevote.clone());
        before.last_signed = Some(SignedMessage::Vote(precommit.clone()));
        let persisted = before.persisted();
        assert_eq!(persisted.votes, vec![prevote.clone()]);
        let mut c = machine(&ks, 0, Some(persisted));
        let outs = c.handle(Timestamp(20), start());
        assert_eq!(
            votes_out(&outs),
            vec![
                (VoteType::Prevote, 0, Some(id)),
                (VoteType::Precommit, 0, None)
            ],
            "{outs:?}"
        );
        assert_eq!(c.step(), Step::Precommit);
    }

    /// The others stayed in round 0 waiting for +2/3 precommits; our round-0
    /// precommit never reached them, and we moved to round 1 and crashed. Our
    /// precommit was lost with us, and without it round 0 never ended for them
    /// while we alone could not drag them to round 1. Our votes of every round of
    /// the height are persisted and held again after a restart.
    #[test]
    fn restart_keeps_our_votes_of_earlier_rounds() {
        let ks = keys();
        let precommit = vote(&ks[0], VoteType::Precommit, 0, None);
        let prevote = vote(&ks[0], VoteType::Prevote, 1, None);
        let mut before = machine(&ks, 0, None);
        before.handle(Timestamp(1), start());
        before.votes.add(&before.validators, precommit.clone());
        before.round = Round(1);
        before.last_signed = Some(SignedMessage::Vote(prevote.clone()));
        let persisted = before.persisted();
        assert_eq!(persisted.votes, vec![precommit.clone()]);
        let mut c = machine(
            &ks,
            0,
            Some(PersistedState {
                round: Round(1),
                ..persisted
            }),
        );
        let outs = c.handle(Timestamp(20), start());
        // The vote of the round we resume is sent at once; the older one is held
        // for the peers that still need it.
        assert_eq!(
            votes_out(&outs),
            vec![(VoteType::Prevote, 1, None)],
            "{outs:?}"
        );
        assert_eq!(c.votes(Round(0), VoteType::Precommit), vec![&precommit]);
    }
}
