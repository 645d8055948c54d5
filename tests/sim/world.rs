//! The simulated world: nodes running the real consensus core, a clock, a lossy
//! network, disks that survive crashes, and the gossip of the runtime.
//!
//! One event queue ordered by (time in ms, sequence number) drives everything.
//! A node's outputs are carried out in order, as the runtime does: `Persist`
//! lands on the node's disk before any later output is carried out, broadcasts go
//! to every other node, timeouts and answers to `RequestValue`/`ValidateValue`
//! come back as events.
//!
//! The network and the runtime's gossip are in `network.rs`, traces in
//! `trace.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use consort::consensus::{
    Consensus, Input, Output, Params, PersistedState, SignedMessage, StepTimeout, Timeout, Timeouts,
};
use consort::types::{
    Block, BlockId, Commit, Height, Keypair, Proposal, Round, Signature, Timestamp, Validator,
    ValidatorSet, Vote,
};

use super::chain::{CHAIN_ID, Decided, GENESIS_TIME, Verifier};
use super::checks::Checks;
use super::rng::Rng;
use super::scenario::{ByzPlan, CrashMode, Scenario};
use super::trace::{describe_input, describe_output};

/// Largest delay between a decision and the start of the next height (ms).
pub const START_DELAY_MS: u64 = 20;
/// Largest delay of the application answering `RequestValue` (ms).
pub const VALUE_DELAY_MS: u64 = 20;
/// Largest delay of the application answering `ValidateValue` (ms).
pub const VALIDATE_DELAY_MS: u64 = 30;
/// Most decided blocks sent to a lagging peer in one gossip round.
pub const CATCH_UP_BATCH: usize = 8;
/// A run that processes this many events is stopped as not live.
pub const MAX_EVENTS: u64 = 2_000_000;

/// The timeouts of the simulated validators.
pub fn sim_timeouts() -> Timeouts {
    let ms = std::time::Duration::from_millis;
    Timeouts {
        propose: StepTimeout {
            base: ms(300),
            delta: ms(100),
        },
        prevote: StepTimeout {
            base: ms(150),
            delta: ms(50),
        },
        precommit: StepTimeout {
            base: ms(150),
            delta: ms(50),
        },
    }
}

/// Rounds a height may take after the run stabilizes before it counts as a
/// liveness failure.
pub const LIVENESS_ROUNDS: u32 = 8;

/// The liveness bound of one height after stabilization: `rounds` full rounds,
/// each waiting out all three of its timeouts plus the message delay and a gossip
/// period per step, plus the start delay and the application's answers.
pub fn liveness_bound(t: &Timeouts, delta: u64, gossip: u64, rounds: u32) -> u64 {
    let mut total = START_DELAY_MS + VALUE_DELAY_MS + VALIDATE_DELAY_MS;
    for r in 0..rounds {
        total += (t.propose.at(r) + t.prevote.at(r) + t.precommit.at(r)).as_millis() as u64;
        total += 3 * (delta + gossip);
    }
    total
}

/// A message on the wire.
#[derive(Clone, Debug)]
pub enum Msg {
    /// A proposal with its block.
    Proposal(Proposal, Arc<Block>),
    /// A vote.
    Vote(Vote),
    /// Decided blocks with their commits, for a peer that is behind.
    CatchUp(Vec<Decided>),
}

/// What survives a crash.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The last `Output::Persist`.
    pub persisted: Option<PersistedState>,
    /// Decided blocks, height 1 first.
    pub chain: Vec<Decided>,
}

/// One simulated node.
pub struct Node {
    /// Index of the validator whose key it holds.
    pub validator: usize,
    /// The key.
    pub key: Keypair,
    /// Byzantine plan, `None` for a correct node.
    pub plan: Option<ByzPlan>,
    /// The running core; `None` while crashed.
    pub core: Option<Consensus>,
    /// Incarnation: bumped at each crash, so that events of an earlier life are
    /// dropped.
    pub inc: u32,
    /// What it persisted.
    pub disk: Disk,
    /// Signatures of the messages of its current height it already holds (what
    /// its peers know it has).
    pub seen: HashSet<Signature>,
    seen_height: Height,
    /// A crash waiting for the next persist: mode and index in the scenario.
    pub armed: Option<(CrashMode, usize)>,
    /// Nodes it exchanges messages with (everyone else, except for twins).
    pub audience: Vec<usize>,
    /// The other copy, for one of two twins.
    pub twin: Option<usize>,
    /// Blocks it has seen lately (a Byzantine node's stock of old values).
    pub memory: Vec<Arc<Block>>,
}

impl Node {
    /// Whether the node is correct.
    pub fn correct(&self) -> bool {
        self.plan.is_none()
    }
}

pub(crate) enum Ev {
    Deliver {
        to: usize,
        inc: u32,
        msg: Msg,
    },
    Timeout {
        node: usize,
        inc: u32,
        t: Timeout,
    },
    Value {
        node: usize,
        inc: u32,
        height: Height,
        round: Round,
        block: Arc<Block>,
    },
    Validity {
        node: usize,
        inc: u32,
        height: Height,
        id: BlockId,
        valid: bool,
    },
    StartHeight {
        node: usize,
        inc: u32,
        height: Height,
    },
    Gossip {
        node: usize,
        inc: u32,
    },
    Crash {
        crash: usize,
    },
    Amnesia {
        node: usize,
        down_for: u64,
    },
    Restart {
        node: usize,
        amnesia: bool,
        counted: bool,
    },
    SplitTwins,
    Gst,
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Counters of a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Messages put on the wire.
    pub sent: u64,
    /// Messages lost (drops, partitions, down receivers).
    pub lost: u64,
    /// Messages refused for a bad signature or commit.
    pub refused: u64,
    /// Messages skipped as already held.
    pub duplicates: u64,
    /// Evidence outputs of correct nodes.
    pub evidence: u64,
    /// Heights applied from a peer's commit.
    pub caught_up: u64,
    /// Crashes and restarts carried out.
    pub crashes: u64,
    /// Highest round entered by a correct node.
    pub max_round: u32,
    /// Highest round entered by a correct node after stabilization.
    pub max_round_stable: u32,
    /// Longest time after stabilization for all correct nodes to decide a height.
    pub max_gap: u64,
    /// The liveness bound of the run (ms).
    pub bound: u64,
}

/// The result of one run.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Safety violations (agreement, validity, double signing, persistence).
    pub safety: Vec<String>,
    /// Liveness failure, if any.
    pub liveness: Option<String>,
    /// Highest height decided by a correct node.
    pub heights: u64,
    /// Simulated time at the end (ms).
    pub sim_ms: u64,
    /// Hash of the decisions and the event count, to check determinism.
    pub digest: u64,
    /// Counters.
    pub stats: Stats,
}

/// The simulated world of one run.
pub struct Sim {
    pub(crate) sc: Scenario,
    pub(crate) rng: Rng,
    pub(crate) now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) ver: Verifier,
    timeouts: Timeouts,
    pub(crate) checks: Checks,
    pub(crate) trace: bool,
    pending_crashes: usize,
    stable_at: Option<u64>,
    goal: u64,
    last_progress: u64,
    min_height: u64,
    bound: u64,
    pub(crate) stats: Stats,
}

impl Sim {
    /// Builds the world of `seed`.
    pub fn new(seed: u64, trace: bool) -> Sim {
        let mut root = Rng::new(seed);
        let mut scenario_rng = root.fork();
        let rng = root.fork();
        let sc = Scenario::generate(seed, &mut scenario_rng);
        let keys: Vec<Keypair> = sc
            .key_seeds
            .iter()
            .map(|s| Keypair::from_seed(*s))
            .collect();
        let set = ValidatorSet::new(
            keys.iter()
                .zip(&sc.powers)
                .enumerate()
                .map(|(i, (k, p))| Validator {
                    public_key: k.public(),
                    power: *p,
                    name: format!("v{i}"),
                })
                .collect(),
        )
        .expect("valid set");
        let timeouts = sim_timeouts();

        let mut audience: Vec<Vec<usize>> = (0..sc.nodes)
            .map(|i| (0..sc.nodes).filter(|j| *j != i).collect())
            .collect();
        let mut twin_of: Vec<Option<usize>> = vec![None; sc.nodes];
        for (b, &a) in sc.node_validator.iter().enumerate().skip(sc.powers.len()) {
            twin_of[a] = Some(b);
            twin_of[b] = Some(a);
        }

        let nodes: Vec<Node> = (0..sc.nodes)
            .map(|i| {
                let v = sc.node_validator[i];
                Node {
                    validator: v,
                    key: keys[v].clone(),
                    plan: sc.byz[v].clone(),
                    core: None,
                    inc: 0,
                    disk: Disk::default(),
                    seen: HashSet::new(),
                    seen_height: Height(0),
                    armed: None,
                    audience: std::mem::take(&mut audience[i]),
                    twin: twin_of[i],
                    memory: Vec::new(),
                }
            })
            .collect();
        let bound = liveness_bound(&timeouts, sc.net.delay_post, sc.gossip_ms, LIVENESS_ROUNDS);
        let mut sim = Sim {
            pending_crashes: sc.crashes.len(),
            sc,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            ver: Verifier::new(set),
            timeouts,
            checks: Checks::default(),
            trace,
            stable_at: None,
            goal: 0,
            last_progress: 0,
            min_height: 0,
            bound,
            stats: Stats::default(),
        };
        for i in 0..sim.nodes.len() {
            sim.nodes[i].core = Some(Consensus::new(sim.params(i), None));
            let at = sim.rng.below(10);
            sim.push(
                at,
                Ev::StartHeight {
                    node: i,
                    inc: 0,
                    height: Height::GENESIS,
                },
            );
            let at = sim.rng.below(sim.sc.gossip_ms);
            sim.push(at, Ev::Gossip { node: i, inc: 0 });
            if sim.nodes[i].plan.as_ref().is_some_and(|p| p.amnesia) {
                for _ in 0..sim.rng.range(1, 3) {
                    let at = sim.rng.below(sim.sc.gst + 2000);
                    let down_for = sim.rng.below(500);
                    sim.push(at, Ev::Amnesia { node: i, down_for });
                }
            }
        }
        sim.split_twins();
        if sim.nodes.iter().any(|n| n.twin.is_some()) {
            let at = sim.rng.range(200, 1500);
            sim.push(at, Ev::SplitTwins);
        }
        for c in 0..sim.sc.crashes.len() {
            let at = sim.sc.crashes[c].at;
            sim.push(at, Ev::Crash { crash: c });
        }
        let gst = sim.sc.gst;
        sim.push(gst, Ev::Gst);
        sim
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.sc
    }

    fn params(&self, i: usize) -> Params {
        Params {
            chain_id: CHAIN_ID.to_string(),
            validators: self.ver.set.clone(),
            key: Some(self.nodes[i].key.clone()),
            timeouts: self.timeouts,
        }
    }

    pub(crate) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    /// Runs to the end: every correct node decided the target heights after
    /// stabilization, or a property failed.
    pub fn run(mut self) -> Outcome {
        while let Some(Reverse(q)) = self.queue.pop() {
            self.now = q.at;
            self.stats.events += 1;
            self.handle(q.ev);
            if !self.checks.safety.is_empty() {
                break;
            }
            if self.stable_at.is_none() && self.now >= self.sc.gst && self.pending_crashes == 0 {
                self.stabilize();
            }
            if self.stable_at.is_some() {
                if self.min_height >= self.goal {
                    break;
                }
                if self.sc.boundary {
                    // No liveness owed: run as long as a normal run may, then stop.
                    if self.now > self.last_progress + self.bound {
                        break;
                    }
                    continue;
                }
                if self.now > self.last_progress + self.bound {
                    self.checks.liveness = Some(format!(
                        "no height decided by every correct node for {} ms (bound {} ms) \
                         after stabilization at {} ms; every correct node has decided {} \
                         heights, the goal is {}",
                        self.now - self.last_progress,
                        self.bound,
                        self.stable_at.unwrap_or(0),
                        self.min_height,
                        self.goal
                    ));
                    break;
                }
            }
            if self.checks.liveness.is_some() {
                break;
            }
            if self.stats.events >= MAX_EVENTS {
                if self.sc.boundary {
                    break;
                }
                self.checks.liveness = Some(format!(
                    "gave up after {} events at {} ms",
                    self.stats.events, self.now
                ));
                break;
            }
        }
        if self.checks.liveness.is_some() {
            let nodes = self.describe_nodes();
            if let Some(l) = &mut self.checks.liveness {
                l.push_str(&nodes);
            }
        }
        self.stats.bound = self.bound;
        let heights = self.checks.decided.keys().next_back().copied().unwrap_or(0);
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
        for (h, (id, _)) in &self.checks.decided {
            for b in h.to_le_bytes().iter().chain(id.as_bytes()) {
                digest = (digest ^ *b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        digest ^= self.stats.events.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Outcome {
            seed: self.sc.seed,
            safety: self.checks.safety,
            liveness: self.checks.liveness,
            heights,
            sim_ms: self.now,
            digest,
            stats: self.stats,
        }
    }

    /// Where every node is, for a liveness report.
    fn describe_nodes(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            s.push_str(&format!(
                "\n    n{i} (v{}{}): {} decided, ",
                n.validator,
                if n.correct() { "" } else { ", byzantine" },
                n.disk.chain.len()
            ));
            match &n.core {
                None => s.push_str("down"),
                Some(c) => s.push_str(&format!(
                    "h{} r{} {}, locked {:?}, last signed {:?}",
                    c.height(),
                    c.round(),
                    c.step().as_str(),
                    c.locked().map(|(r, id)| (r.0, id.short())),
                    c.last_signed().map(|m| m.slot())
                )),
            }
        }
        s
    }

    fn stabilize(&mut self) {
        let heights: Vec<u64> = self.correct_heights();
        let max = heights.iter().copied().max().unwrap_or(0);
        self.stable_at = Some(self.now);
        self.goal = max + self.sc.target_heights;
        self.last_progress = self.now;
        self.min_height = heights.iter().copied().min().unwrap_or(0);
        if self.trace {
            eprintln!(
                "[{:>7}] stable: heights {heights:?}, goal {}, bound {} ms",
                self.now, self.goal, self.bound
            );
        }
    }

    fn correct_heights(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.correct())
            .map(|n| n.disk.chain.len() as u64)
            .collect()
    }

    /// After a decision: progress of the slowest correct node.
    fn note_progress(&mut self) {
        if self.stable_at.is_none() {
            return;
        }
        let min = self.correct_heights().into_iter().min().unwrap_or(0);
        if min > self.min_height {
            let gap = self.now - self.last_progress;
            self.stats.max_gap = self.stats.max_gap.max(gap);
            if gap > self.bound && self.checks.liveness.is_none() && !self.sc.boundary {
                self.checks.liveness = Some(format!(
                    "height {min} took {gap} ms to be decided by every correct node (bound {} ms)",
                    self.bound
                ));
            }
            self.min_height = min;
            self.last_progress = self.now;
        }
    }

    fn alive(&self, node: usize, inc: u32) -> bool {
        self.nodes[node].inc == inc && self.nodes[node].core.is_some()
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, inc, msg } => {
                if self.alive(to, inc) {
                    self.deliver(to, msg);
                } else {
                    self.stats.lost += 1;
                }
            }
            Ev::Timeout { node, inc, t } => {
                if self.alive(node, inc) {
                    self.feed(node, Input::Timeout(t));
                }
            }
            Ev::Value {
                node,
                inc,
                height,
                round,
                block,
            } => {
                if self.alive(node, inc) {
                    self.feed(
                        node,
                        Input::ProposeValue {
                            height,
                            round,
                            block,
                        },
                    );
                }
            }
            Ev::Validity {
                node,
                inc,
                height,
                id,
                valid,
            } => {
                if self.alive(node, inc) {
                    self.feed(
                        node,
                        Input::ValueValidity {
                            height,
                            block_id: id,
                            valid,
                        },
                    );
                }
            }
            Ev::StartHeight { node, inc, height } => {
                if self.alive(node, inc) {
                    self.start_height(node, height);
                }
            }
            Ev::Gossip { node, inc } => {
                if self.alive(node, inc) {
                    let g = self.sc.gossip_ms;
                    let at = self.now + g - g / 10 + self.rng.below(g / 5 + 1);
                    self.push(at, Ev::Gossip { node, inc });
                    self.gossip(node);
                }
            }
            Ev::Crash { crash } => {
                let c = self.sc.crashes[crash].clone();
                let n = &self.nodes[c.node];
                if n.core.is_none() || n.armed.is_some() {
                    // Already down or about to crash: this crash does not happen.
                    self.pending_crashes -= 1;
                } else if c.mode == CrashMode::Now {
                    self.crash(c.node, Some(crash));
                } else {
                    self.nodes[c.node].armed = Some((c.mode, crash));
                    if self.trace {
                        eprintln!("[{:>7}] n{} armed to crash: {:?}", self.now, c.node, c.mode);
                    }
                }
            }
            Ev::Amnesia { node, down_for } => {
                if self.nodes[node].core.is_some() {
                    self.nodes[node].core = None;
                    self.nodes[node].inc += 1;
                    self.nodes[node].seen.clear();
                    let at = self.now + down_for;
                    self.push(
                        at,
                        Ev::Restart {
                            node,
                            amnesia: true,
                            counted: false,
                        },
                    );
                }
            }
            Ev::Restart {
                node,
                amnesia,
                counted,
            } => self.restart(node, amnesia, counted),
            Ev::SplitTwins => {
                self.split_twins();
                let at = self.now + self.rng.range(200, 1500);
                self.push(at, Ev::SplitTwins);
            }
            Ev::Gst => {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].armed.take().is_some() {
                        self.pending_crashes -= 1;
                    }
                }
            }
        }
    }

    fn crash(&mut self, i: usize, crash: Option<usize>) {
        let node = &mut self.nodes[i];
        node.core = None;
        node.inc += 1;
        node.seen.clear();
        node.armed = None;
        self.stats.crashes += 1;
        let down_for = crash.map_or(0, |c| self.sc.crashes[c].down_for);
        if self.trace {
            eprintln!("[{:>7}] n{i} CRASH, down {down_for} ms", self.now);
        }
        let at = self.now + down_for;
        self.push(
            at,
            Ev::Restart {
                node: i,
                amnesia: false,
                counted: crash.is_some(),
            },
        );
    }

    fn restart(&mut self, i: usize, amnesia: bool, counted: bool) {
        let restored = if amnesia {
            None
        } else {
            self.nodes[i].disk.persisted.clone()
        };
        if self.trace {
            eprintln!(
                "[{:>7}] n{i} RESTART{} from {restored:?}",
                self.now,
                if amnesia { " (amnesia)" } else { "" }
            );
        }
        self.nodes[i].core = Some(Consensus::new(self.params(i), restored));
        self.nodes[i].seen_height = Height(0);
        let inc = self.nodes[i].inc;
        let at = self.now + self.rng.below(self.sc.gossip_ms);
        self.push(at, Ev::Gossip { node: i, inc });
        if counted {
            self.pending_crashes -= 1;
        }
        let next = Height(self.nodes[i].disk.chain.len() as u64 + 1);
        self.start_height(i, next);
    }

    fn start_height(&mut self, i: usize, height: Height) {
        let chain = &self.nodes[i].disk.chain;
        if chain.len() as u64 + 1 != height.0 {
            return;
        }
        let last_block_time = chain.last().map_or(GENESIS_TIME, |d| d.block.header.time);
        self.feed(
            i,
            Input::StartHeight {
                height,
                last_block_time,
            },
        );
    }

    /// The node's clock: the simulated time plus its skew.
    fn clock(&self, i: usize) -> Timestamp {
        Timestamp(GENESIS_TIME.0 + self.now + self.sc.skew[i])
    }

    /// Feeds one input to node `i` and carries out its outputs.
    pub(crate) fn feed(&mut self, i: usize, input: Input) {
        let now = self.clock(i);
        if self.trace {
            eprintln!("[{:>7}] n{i} <- {}", self.now, describe_input(&input));
        }
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let outs = core.handle(now, input);
        let h = core.height();
        let node = &mut self.nodes[i];
        if h != node.seen_height {
            node.seen.clear();
            node.seen_height = h;
        }
        self.exec(i, outs);
    }

    pub(crate) fn exec(&mut self, i: usize, outs: Vec<Output>) {
        let correct = self.nodes[i].correct();
        for out in outs {
            if self.nodes[i].core.is_none() {
                return;
            }
            if self.trace {
                eprintln!("[{:>7}] n{i} -> {}", self.now, describe_output(&out));
            }
            match out {
                Output::Persist(state) => {
                    if let Some((CrashMode::TornPersist, c)) = self.nodes[i].armed {
                        self.crash(i, Some(c));
                        return;
                    }
                    if correct {
                        if let Some(m) = &state.last_signed {
                            self.checks.signed(i, self.nodes[i].validator, m);
                        }
                    }
                    self.nodes[i].disk.persisted = Some(state);
                    if let Some((CrashMode::AfterPersist, c)) = self.nodes[i].armed {
                        self.crash(i, Some(c));
                        return;
                    }
                }
                Output::BroadcastProposal { proposal, block } => {
                    if correct {
                        let m = SignedMessage::Proposal(proposal.clone());
                        self.check_durable(i, &m);
                        self.checks.signed(i, self.nodes[i].validator, &m);
                    }
                    self.remember(i, &block);
                    self.broadcast(i, Msg::Proposal(proposal, block));
                }
                Output::BroadcastVote(vote) => {
                    if correct {
                        let m = SignedMessage::Vote(vote.clone());
                        self.check_durable(i, &m);
                        self.checks.signed(i, self.nodes[i].validator, &m);
                    }
                    self.broadcast(i, Msg::Vote(vote));
                }
                Output::ScheduleTimeout { timeout, duration } => {
                    let at = self.now + duration.as_millis() as u64;
                    let inc = self.nodes[i].inc;
                    self.push(
                        at,
                        Ev::Timeout {
                            node: i,
                            inc,
                            t: timeout,
                        },
                    );
                }
                Output::RequestValue { height, round } => {
                    if let Some(block) = self.make_value(i, height) {
                        let at = self.now + self.rng.range(1, VALUE_DELAY_MS);
                        let inc = self.nodes[i].inc;
                        self.push(
                            at,
                            Ev::Value {
                                node: i,
                                inc,
                                height,
                                round,
                                block: Arc::new(block),
                            },
                        );
                    }
                }
                Output::ValidateValue { height, block, .. } => {
                    self.remember(i, &block);
                    let chain = &self.nodes[i].disk.chain;
                    let valid = if chain.len() as u64 + 1 == height.0 {
                        let prev = chain.last().cloned();
                        self.ver.valid_block(&block, height, prev.as_ref())
                    } else {
                        false
                    };
                    let at = self.now + self.rng.range(1, VALIDATE_DELAY_MS);
                    let inc = self.nodes[i].inc;
                    self.push(
                        at,
                        Ev::Validity {
                            node: i,
                            inc,
                            height,
                            id: block.id(),
                            valid,
                        },
                    );
                }
                Output::Decide {
                    height,
                    block,
                    commit,
                    ..
                } => {
                    if self.decided(i, height, block, commit, "decided") {
                        if let Some((CrashMode::AfterDecide, c)) = self.nodes[i].armed {
                            self.crash(i, Some(c));
                            return;
                        }
                        let at = self.now + self.rng.below(START_DELAY_MS + 1);
                        let inc = self.nodes[i].inc;
                        self.push(
                            at,
                            Ev::StartHeight {
                                node: i,
                                inc,
                                height: height.next(),
                            },
                        );
                    }
                }
                Output::Evidence(_) => {
                    if correct {
                        self.stats.evidence += 1;
                    }
                }
                Output::NewRound { round, .. } => {
                    if correct {
                        self.stats.max_round = self.stats.max_round.max(round.0);
                        if self.stable_at.is_some() {
                            self.stats.max_round_stable = self.stats.max_round_stable.max(round.0);
                        }
                    }
                }
            }
        }
    }

    /// Persist before send: a correct node's signed message leaves only once the
    /// signing state that covers it is on its disk.
    fn check_durable(&mut self, i: usize, m: &SignedMessage) {
        let durable = self.nodes[i]
            .disk
            .persisted
            .as_ref()
            .and_then(|p| p.last_signed.as_ref())
            .is_some_and(|last| last.slot() >= m.slot());
        if !durable {
            self.checks.safety.push(format!(
                "n{i} sent {m:?} before persisting a signing state that covers it"
            ));
        }
    }

    /// Records a decision of node `i` (from its core or from a peer's commit).
    /// Returns false if it was not applied.
    fn decided(
        &mut self,
        i: usize,
        height: Height,
        block: Arc<Block>,
        commit: Commit,
        how: &str,
    ) -> bool {
        let chain_len = self.nodes[i].disk.chain.len() as u64;
        let correct = self.nodes[i].correct();
        if chain_len + 1 != height.0 {
            if correct {
                self.checks.safety.push(format!(
                    "n{i} decided height {height} with {chain_len} heights on its disk"
                ));
            }
            return false;
        }
        let id = block.id();
        if correct {
            if commit.block_id != id
                || commit.height != height
                || !self.ver.commit(&commit, height, &id)
            {
                self.checks.safety.push(format!(
                    "n{i} decided {} at height {height} with a commit that does not certify it",
                    id.short()
                ));
            }
            let first = self.checks.decision(i, height, id, how);
            if first {
                let prev = self.nodes[i].disk.chain.last().cloned();
                if !self.ver.valid_block(&block, height, prev.as_ref()) {
                    self.checks.safety.push(format!(
                        "validity: n{i} decided block {} at height {height}, which is not valid",
                        id.short()
                    ));
                }
            }
        }
        self.nodes[i].disk.chain.push(Decided { block, commit });
        if correct {
            self.note_progress();
        }
        true
    }

    fn deliver(&mut self, to: usize, msg: Msg) {
        match msg {
            Msg::Vote(v) => {
                if self.nodes[to].seen.contains(&v.signature) {
                    self.stats.duplicates += 1;
                    return;
                }
                if !self.ver.vote(&v) {
                    self.stats.refused += 1;
                    return;
                }
                let (sig, round, t, h) = (v.signature, v.round, v.vote_type, v.height);
                self.feed(to, Input::Vote(v));
                // Peers learn that we hold it only if the core counted it (a
                // conflicting vote for a value without support yet is not).
                let node = &mut self.nodes[to];
                let held = node.core.as_ref().is_some_and(|c| {
                    c.height() == h && c.votes(round, t).iter().any(|w| w.signature == sig)
                });
                if held {
                    node.seen.insert(sig);
                }
            }
            Msg::Proposal(p, block) => {
                if self.nodes[to].seen.contains(&p.signature) {
                    self.stats.duplicates += 1;
                    return;
                }
                if !self.ver.proposal(&p) {
                    self.stats.refused += 1;
                    return;
                }
                let (sig, round, h) = (p.signature, p.round, p.height);
                self.feed(to, Input::Proposal { proposal: p, block });
                let node = &mut self.nodes[to];
                let held = node.core.as_ref().is_some_and(|c| {
                    c.height() == h && c.proposal(round).is_some_and(|(q, _)| q.signature == sig)
                });
                if held {
                    node.seen.insert(sig);
                }
            }
            Msg::CatchUp(decided) => {
                let mut applied = false;
                for d in decided {
                    let height = d.commit.height;
                    let node = &self.nodes[to];
                    if node.disk.chain.len() as u64 + 1 != height.0 {
                        continue;
                    }
                    let id = d.block.id();
                    let prev = node.disk.chain.last().cloned();
                    if d.commit.block_id != id
                        || !self.ver.commit(&d.commit, height, &id)
                        || !self.ver.valid_block(&d.block, height, prev.as_ref())
                    {
                        self.stats.refused += 1;
                        break;
                    }
                    if self.trace {
                        eprintln!(
                            "[{:>7}] n{to} applies height {height} ({}) from a peer's commit",
                            self.now,
                            id.short()
                        );
                    }
                    if !self.decided(to, height, d.block, d.commit, "caught up") {
                        break;
                    }
                    self.stats.caught_up += 1;
                    applied = true;
                }
                if applied {
                    let next = Height(self.nodes[to].disk.chain.len() as u64 + 1);
                    self.start_height(to, next);
                }
            }
        }
    }

    /// Adds a block to the node's stock of seen values.
    fn remember(&mut self, i: usize, block: &Arc<Block>) {
        let node = &mut self.nodes[i];
        if node.plan.is_none() {
            return;
        }
        if node.memory.len() >= 16 {
            node.memory.remove(0);
        }
        node.memory.push(block.clone());
    }

    /// The block node `i` proposes at `height`.
    fn make_value(&mut self, i: usize, height: Height) -> Option<Block> {
        let chain = &self.nodes[i].disk.chain;
        if chain.len() as u64 + 1 != height.0 {
            return None;
        }
        let prev = chain.last().cloned();
        let key = self.nodes[i].key.clone();
        let invalid = self.nodes[i]
            .plan
            .as_ref()
            .map_or(0.0, |p| p.invalid_proposals);
        if self.rng.chance(invalid) {
            Some(
                self.ver
                    .build_invalid_block(&mut self.rng, height, prev.as_ref(), &key),
            )
        } else {
            Some(
                self.ver
                    .build_block(&mut self.rng, height, prev.as_ref(), &key),
            )
        }
    }
}
