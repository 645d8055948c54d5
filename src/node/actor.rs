//! The consensus actor: one task that owns the core, feeds it inputs (peer
//! messages, timers, results of block building and checking) and carries out its
//! outputs. [`Actor::execute`] is the one place where outputs take effect, and it
//! takes them in order: a [`Output::Persist`] is fsynced before the broadcast that
//! follows it, so no signature leaves the node before the state guarding it is
//! durable.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::blocks::BlockRules;
use super::error::NodeError;
use super::status::{NodeStatus, SyncPhase};
use super::timers::{TimerEvent, Timers};
use super::{PeerFault, Store, catchup::CatchUp};
use crate::app::{Application, Execution};
use crate::consensus::{Consensus, FUTURE_HEIGHT_ROUNDS, Input, MAX_ROUND_LEAD, Output, Step};
use crate::metrics::NodeMetrics;
use crate::net::{NetEvents, NetMessage, Network, PeerEvent};
use crate::storage::{SigningStateFile, WalEntry};
use crate::types::{Block, BlockId, Commit, Evidence, Hash, Height, PublicKey, Round, Timestamp};

/// Gossiped transaction batches checked at once, off the actor's thread.
pub const MAX_ADMISSION_JOBS: usize = 4;

/// Blocks between two checkpoints of the application state.
const CHECKPOINT_EVERY: u64 = 100;

/// Penalty points after which a peer is cut off.
pub const BAN_SCORE: u32 = 100;
/// Block-channel messages handled between two fsyncs of the block log.
const BLOCK_BATCH: usize = 256;
/// How long a cut-off peer stays refused.
pub const BAN_TIME: Duration = Duration::from_secs(60);
/// Penalty points forgiven per second: an honest peer's rare slips (a vote it
/// relayed late, a transaction that went stale in flight) never add up to a ban.
pub const SCORE_DECAY_PER_SEC: f64 = 1.0;
/// Penalties of at least this many points are logged at warn level; smaller
/// ones (one per message of a flood) at debug, so that a flood does not flood
/// the log too.
const WARN_POINTS: u32 = 10;
/// How long a node may stay one height behind its peers before its status
/// says it is catching up.
const CATCHING_UP_AFTER: Duration = Duration::from_secs(5);

/// A vote or proposal this many heights above both our height and the height
/// its sender announced is no honest message: its sender is scored.
pub const FUTURE_HEIGHT_SLACK: u64 = 100;

/// The wall clock, in the core's unit.
pub fn now_ms() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// Pacing and gossip settings of the actor.
#[derive(Clone, Debug)]
pub struct ActorConfig {
    /// Pause after a decision before the next height.
    pub commit_delay: Duration,
    /// Whether to produce blocks without transactions.
    pub create_empty_blocks: bool,
    /// Minimum time between empty blocks.
    pub empty_block_interval: Duration,
    /// How often to announce our round state.
    pub gossip_interval: Duration,
    /// Keep only this many recent blocks (0 keeps all).
    pub keep_recent_blocks: u64,
}

/// What a background job (building or checking a block) hands back.
#[derive(Debug)]
pub enum JobDone {
    /// Our proposal for (height, round) is ready.
    Built {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// The block and its execution, or why building failed.
        result: Result<(Block, Execution), super::blocks::InvalidBlock>,
    },
    /// A proposed block was checked.
    Validated {
        /// Height.
        height: Height,
        /// The block.
        block_id: BlockId,
        /// Its execution, or why it is invalid.
        result: Result<Execution, super::blocks::InvalidBlock>,
    },
}

/// What the actor knows of a peer.
#[derive(Clone, Debug, Default)]
pub struct PeerState {
    /// Connected now.
    pub connected: bool,
    /// Its address.
    pub addr: String,
    /// Its reported consensus height.
    pub height: Height,
    /// Its reported round.
    pub round: Round,
    /// Its reported step code.
    pub step: u32,
    /// Penalty points, as of `scored_at`.
    pub score: f64,
    /// When `score` was last brought up to date.
    pub scored_at: Option<Instant>,
    /// When we last re-sent it a proposal or decision votes, per (height, round).
    pub resent: Option<(Height, Round, Instant)>,
}

/// The consensus actor.
pub struct Actor {
    pub(super) core: Consensus,
    pub(super) rules: BlockRules,
    pub(super) store: Arc<dyn Store>,
    pub(super) app: Arc<dyn Application>,
    pub(super) signing: SigningStateFile,
    pub(super) net: Network,
    pub(super) metrics: Arc<NodeMetrics>,
    pub(super) status_tx: watch::Sender<NodeStatus>,
    pub(super) status: NodeStatus,
    pub(super) cfg: ActorConfig,
    pub(super) timers: Timers,
    pub(super) pending: VecDeque<Input>,
    pub(super) jobs_tx: mpsc::UnboundedSender<JobDone>,
    pub(super) jobs_rx: mpsc::UnboundedReceiver<JobDone>,
    /// Executions of blocks of the current height, by block id.
    pub(super) execs: HashMap<BlockId, Execution>,
    /// Blocks being built or checked off the actor's thread, by height.
    pub(super) jobs_in_flight: HashMap<Height, usize>,
    /// Propose timeouts that fired while a block of their height was being
    /// built or checked, delivered when that is done (see
    /// [`Actor::fire_timers`]).
    pub(super) deferred_timeouts: Vec<crate::consensus::Timeout>,
    /// Evidence seen and not yet committed.
    pub(super) evidence_pool: super::evidence::EvidencePool,
    pub(super) peers: HashMap<PublicKey, PeerState>,
    pub(super) catchup: CatchUp,
    /// Answers peers' block requests off this task.
    pub(super) block_server: super::block_server::BlockServer,
    /// Time of the latest committed block.
    pub(super) last_block_time: Timestamp,
    /// When the latest block was committed here.
    pub(super) last_commit_at: Instant,
    /// The round in which the current height was decided, while waiting for the
    /// next height.
    pub(super) decided_round: Option<Round>,
    /// A height waiting for transactions before it starts.
    pub(super) waiting_start: Option<Height>,
    /// Transaction intake shared with the gRPC service.
    pub(super) txpool: Arc<super::txpool::TxPool>,
    /// Admission jobs of gossiped transactions in flight (at most
    /// [`MAX_ADMISSION_JOBS`]).
    pub(super) admissions: Arc<tokio::sync::Semaphore>,
    /// Peers that gossiped invalid transactions, reported by admission jobs
    /// (at most one report per job in flight).
    pub(super) bad_tx_tx: mpsc::UnboundedSender<(PublicKey, usize)>,
    pub(super) bad_tx_rx: mpsc::UnboundedReceiver<(PublicKey, usize)>,
    /// Takes snapshots every so many blocks.
    pub(super) snapshotter: Arc<crate::sync::snapshotter::Snapshotter>,
    /// Misbehaviour switched on for tests (builds with the `faults` feature).
    #[cfg(feature = "faults")]
    pub(super) faults: crate::faults::Faults,
    /// Our key, outside the core, only while a misbehaviour that signs is on.
    #[cfg(feature = "faults")]
    pub(super) fault_key: Option<crate::types::Keypair>,
    /// Ticks of the misbehaviours, to vary what they send.
    #[cfg(feature = "faults")]
    pub(super) fault_tick: u64,
}

impl Actor {
    /// Runs until `shutdown` turns true or a fatal error.
    pub async fn run(
        mut self,
        mut events: NetEvents,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let mut gossip = tokio::time::interval(self.cfg.gossip_interval);
        gossip.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let txpool = self.txpool.clone();
        loop {
            self.drain()?;
            self.publish_status();
            let deadline = self
                .timers
                .next_deadline()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break;
                    }
                }
                Some((peer, msg)) = events.consensus.recv() => self.on_consensus_msg(peer, msg),
                Some((peer, msg)) = events.proposals.recv() => self.on_proposal_msg(peer, msg),
                Some(done) = self.jobs_rx.recv() => self.on_job_done(done),
                _ = tokio::time::sleep_until(deadline) => self.fire_timers(),
                Some((peer, msg)) = events.blocks.recv() => {
                    self.on_block_msg(peer, msg)?;
                    // A node catching up receives blocks back to back: take what
                    // is already queued, apply it (one batch of commit
                    // signatures), then make the whole batch durable at once.
                    for _ in 0..BLOCK_BATCH {
                        let Ok((peer, msg)) = events.blocks.try_recv() else { break };
                        self.on_block_msg(peer, msg)?;
                    }
                    self.apply_received()?;
                    self.sync_blocks()?;
                    // Refill the request window now: waiting for the next
                    // status or gossip tick capped block sync at one window
                    // per status message.
                    self.request_blocks();
                }
                Some(ev) = events.peers.recv() => self.on_peer_event(ev),
                _ = gossip.tick() => self.gossip_tick(),
                // At most MAX_ADMISSION_JOBS gossiped batches are checked at once;
                // beyond, the mempool queue is not read and QUIC flow control
                // holds the peers back, instead of admission jobs piling up.
                Some((peer, msg)) = events.mempool.recv(), if self.admissions.available_permits() > 0 => {
                    self.on_mempool_msg(peer, msg);
                }
                _ = txpool.arrived(), if self.waiting_start.is_some() => {
                    if let Some(h) = self.waiting_start {
                        self.try_start_height(h, false);
                    }
                }
                Some((peer, count)) = self.bad_tx_rx.recv() => {
                    self.penalize(&peer, PeerFault::InvalidTxs { count });
                }
            }
        }
        self.sync_blocks()?;
        if let Err(e) = self.app.checkpoint() {
            warn!(error = %e, "state checkpoint at shutdown failed");
        }
        info!("consensus stopped");
        Ok(())
    }

    /// Feeds queued inputs until none is left.
    pub(super) fn drain(&mut self) -> Result<(), NodeError> {
        // Nothing starts a height on top of blocks that are not durable yet.
        self.sync_blocks()?;
        while let Some(input) = self.pending.pop_front() {
            let outputs = self.core.handle(now_ms(), input);
            self.execute(outputs)?;
        }
        Ok(())
    }

    /// Carries out the core's outputs, in order. The only place they take effect.
    pub(super) fn execute(&mut self, outputs: Vec<Output>) -> Result<(), NodeError> {
        for out in outputs {
            match out {
                Output::Persist(state) => {
                    // Durable before anything after it (the broadcast it guards).
                    let t = std::time::Instant::now();
                    self.signing.save(&state).map_err(NodeError::SigningState)?;
                    self.metrics
                        .signing_fsync
                        .observe(t.elapsed().as_secs_f64());
                }
                Output::BroadcastVote(vote) => {
                    self.wal(WalEntry::Vote(vote.clone()));
                    #[cfg(feature = "faults")]
                    if self.faults.equivocate_votes {
                        self.equivocate_vote(&vote);
                    }
                    self.net.broadcast(NetMessage::Vote(vote));
                }
                Output::BroadcastProposal { proposal, block } => {
                    self.wal(WalEntry::Proposal {
                        proposal: proposal.clone(),
                        block: (*block).clone(),
                    });
                    info!(height = %proposal.height, round = %proposal.round, block = %proposal.block_id.short(), txs = block.txs.len(), "proposing");
                    #[cfg(feature = "faults")]
                    if self.misbehave_proposal(&proposal, &block) {
                        continue;
                    }
                    self.net.broadcast(NetMessage::Proposal { proposal, block });
                }
                Output::ScheduleTimeout { timeout, duration } => {
                    self.timers
                        .schedule(Instant::now() + duration, TimerEvent::Consensus(timeout));
                }
                Output::RequestValue { height, round } => self.spawn_build(height, round),
                Output::ValidateValue { height, block, .. } => self.spawn_validate(height, block),
                Output::Decide {
                    height,
                    round,
                    block,
                    commit,
                } => self.on_decide(height, round, block, commit)?,
                Output::Evidence(ev) => self.on_detected_evidence(ev),
                Output::NewRound { height, round } => {
                    if round.0 > 0 {
                        info!(%height, %round, "new round");
                    }
                    self.metrics.round.set(round.0 as i64);
                }
            }
        }
        self.metrics.step.set(self.core.step().code() as i64);
        Ok(())
    }

    fn wal(&self, entry: WalEntry) {
        let h = match &entry {
            WalEntry::Vote(v) => v.height,
            WalEntry::Proposal { proposal, .. } => proposal.height,
        };
        if let Err(e) = self.store.wal_append(h, &entry) {
            // The WAL only speeds up recovery; the signing state is what keeps us safe.
            warn!(error = %e, "could not append to the consensus WAL");
        }
    }

    // ---- building and checking blocks, off the actor's thread ----

    fn spawn_build(&mut self, height: Height, round: Round) {
        let Some(proposer) = self.core.our_key() else {
            return;
        };
        *self.jobs_in_flight.entry(height).or_default() += 1;
        let rules = self.rules.clone();
        let txs = self.reap_txs();
        let evidence: Vec<Evidence> = self.evidence_pool.for_block(height);
        let tx = self.jobs_tx.clone();
        #[cfg(feature = "faults")]
        let invalid = self.faults.propose_invalid_tx;
        tokio::task::spawn_blocking(move || {
            #[cfg_attr(not(feature = "faults"), allow(unused_mut))]
            let mut result = rules.build(height, proposer, txs, evidence);
            #[cfg(feature = "faults")]
            if invalid {
                if let Ok((block, _)) = &mut result {
                    // Test misbehaviour: a transaction no validator may accept.
                    block
                        .txs
                        .push(bytes::Bytes::from_static(b"not a transaction"));
                    block.header.data_hash = Block::data_hash_of(&block.txs);
                }
            }
            let _ = tx.send(JobDone::Built {
                height,
                round,
                result,
            });
        });
    }

    fn spawn_validate(&mut self, height: Height, block: Arc<Block>) {
        *self.jobs_in_flight.entry(height).or_default() += 1;
        let rules = self.rules.clone();
        let tx = self.jobs_tx.clone();
        tokio::task::spawn_blocking(move || {
            let block_id = block.id();
            let result = rules.validate(height, &block);
            let _ = tx.send(JobDone::Validated {
                height,
                block_id,
                result,
            });
        });
    }

    fn on_job_done(&mut self, done: JobDone) {
        let height = match &done {
            JobDone::Built { height, .. } | JobDone::Validated { height, .. } => *height,
        };
        self.record_job_done(done);
        // After the job's own input, so that a valid proposal is prevoted
        // before its round's held timeout reaches the core.
        let left = self.jobs_in_flight.get_mut(&height).map_or(0, |n| {
            *n -= 1;
            *n
        });
        if left == 0 {
            self.jobs_in_flight.remove(&height);
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred_timeouts)
                .into_iter()
                .partition(|t| t.height <= height);
            self.deferred_timeouts = later;
            self.pending.extend(now.into_iter().map(Input::Timeout));
        }
        // Jobs of heights already left are not waited for.
        let current = self.core.height();
        self.jobs_in_flight.retain(|h, _| *h >= current);
    }

    fn record_job_done(&mut self, done: JobDone) {
        match done {
            JobDone::Built {
                height,
                round,
                result,
            } => match result {
                Ok((block, exec)) => {
                    self.execs.insert(block.id(), exec);
                    self.pending.push_back(Input::ProposeValue {
                        height,
                        round,
                        block: Arc::new(block),
                    });
                }
                Err(e) => warn!(%height, %round, error = %e, "could not build a proposal"),
            },
            JobDone::Validated {
                height,
                block_id,
                result,
            } => {
                let valid = match result {
                    Ok(exec) => {
                        self.execs.insert(block_id, exec);
                        true
                    }
                    // A proposal of a height this node has committed meanwhile
                    // (decided by its peers while it was checked) was checked
                    // against the wrong state: the verdict says nothing of
                    // the proposer, and the core ignores it.
                    Err(e) if height <= self.store.latest_height() => {
                        debug!(%height, block = %block_id.short(), error = %e, "proposal of a height already committed");
                        false
                    }
                    Err(e) => {
                        warn!(%height, block = %block_id.short(), error = %e, "proposed block is invalid");
                        false
                    }
                };
                self.pending.push_back(Input::ValueValidity {
                    height,
                    block_id,
                    valid,
                });
            }
        }
    }

    // ---- decisions ----

    fn on_decide(
        &mut self,
        height: Height,
        round: Round,
        block: Arc<Block>,
        commit: Commit,
    ) -> Result<(), NodeError> {
        if self.store.latest_height() >= height {
            // Already applied from a peer while our own round was finishing.
            return Ok(());
        }
        let id = block.id();
        let exec =
            match self.execs.remove(&id) {
                Some(e) => e,
                // Decided without our own verdict (a proposal we had not checked
                // when +2/3 precommitted it): certified, so applied as such.
                None => self.rules.validate_certified(height, &block).map_err(|e| {
                    NodeError::Diverged {
                        height,
                        reason: e.reason,
                    }
                })?,
            };
        self.commit_block(&block, &commit, &exec, true)?;
        self.decided_round = Some(round);
        self.schedule_next_height(height.next());
        Ok(())
    }

    /// Stores a decided block and applies it: block, commit and state delta in one
    /// write, then the application's committed state. With `durable` the write is
    /// fsynced before anything else happens; without (blocks fetched during
    /// catch-up, each with its +2/3 commit) it is fsynced with a later block, and
    /// at the latest before the application's state is checkpointed, so the state
    /// on disk is never ahead of the block log.
    pub(super) fn commit_block(
        &mut self,
        block: &Block,
        commit: &Commit,
        exec: &Execution,
        durable: bool,
    ) -> Result<(), NodeError> {
        let height = block.height();
        let t = std::time::Instant::now();
        let outcome = crate::codec::encode_outcome(&exec.results, &exec.delta);
        let checkpointing = self.catchup.checkpointing.load(Ordering::Acquire);
        let fsynced = durable || checkpointing;
        if fsynced {
            self.store.append(block, commit, &outcome)?;
            self.catchup.unsynced = false;
        } else {
            self.store.append_deferred(block, commit, &outcome)?;
            self.catchup.unsynced = true;
        }
        self.metrics.block_write.observe(t.elapsed().as_secs_f64());
        self.app.commit(exec)?;
        let hashes: Vec<Hash> = block.txs.iter().map(|t| Hash::digest(t)).collect();
        if let Err(e) = self.store.index_txs(height, &hashes) {
            // The index is rebuilt from the block log at the next start.
            warn!(error = %e, %height, "could not index the block's transactions");
        }
        if let Err(e) = self.store.wal_clear_below(height.next()) {
            warn!(error = %e, "could not clear the consensus WAL");
        }
        self.on_evidence_committed(height, &block.evidence)?;
        self.on_block_committed(block, commit);
        if fsynced {
            // Blocks appended before it without an fsync are durable too now.
            for (b, results) in std::mem::take(&mut self.catchup.unnotified) {
                self.after_commit(&b, &results);
            }
            self.after_commit(block, &exec.results);
        } else {
            // Clients hear of it once it is durable (`sync_blocks`).
            self.catchup
                .unnotified
                .push((block.clone(), exec.results.clone()));
        }
        self.snapshotter.on_commit(height);
        if height.0 % CHECKPOINT_EVERY == 0 {
            // The state is derived from the block log: flushing it is only a
            // checkpoint that shortens replay after a crash. The log is durable
            // up to here first: state on disk must never be ahead of the log.
            self.sync_blocks()?;
            if durable {
                // Consensus pace: the flush runs aside while the next heights
                // are decided (their blocks are fsynced before they are applied).
                let app = self.app.clone();
                let flag = self.catchup.checkpointing.clone();
                flag.store(true, Ordering::Release);
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = app.checkpoint() {
                        warn!(error = %e, "state checkpoint failed");
                    }
                    flag.store(false, Ordering::Release);
                });
            } else if let Err(e) = self.app.checkpoint() {
                // Catching up: blocks are applied faster than they are fsynced,
                // so the flush runs here, between two batches.
                warn!(error = %e, "state checkpoint failed");
            }
        }
        self.execs.clear();
        self.timers.forget_below(height.next());
        self.prune();
        Ok(())
    }

    fn on_block_committed(&mut self, block: &Block, commit: &Commit) {
        let h = block.height();
        let interval = block.header.time.millis_since(self.last_block_time);
        if h.0 > 1 {
            self.metrics
                .block_interval
                .observe(interval as f64 / 1000.0);
        }
        self.metrics.height.set(h.0 as i64);
        self.metrics
            .rounds_per_height
            .observe(f64::from(commit.round.0) + 1.0);
        self.metrics.committed_txs.add(block.txs.len() as u64);
        self.last_block_time = block.header.time;
        self.last_commit_at = Instant::now();
        self.status.height = h;
        self.status.latest_block_hash = Some(block.id());
        self.status.latest_block_time = block.header.time;
        info!(height = %h, round = %commit.round, block = %block.id().short(), txs = block.txs.len(), "committed block");
    }

    fn prune(&mut self) {
        let keep = self.cfg.keep_recent_blocks;
        if keep == 0 {
            return;
        }
        let latest = self.store.latest_height().0;
        if latest <= keep || latest % 100 != 0 {
            return;
        }
        // Keep the blocks of the snapshots served: a joiner fetches the block of
        // the snapshot height.
        let oldest_snapshot = self
            .store
            .snapshot_heights()
            .ok()
            .and_then(|h| h.first().copied())
            .map_or(u64::MAX, |h| h.0);
        let below = (latest - keep + 1).min(oldest_snapshot);
        if below > self.store.base_height().0 {
            if let Err(e) = self.store.prune_below(Height(below)) {
                warn!(error = %e, "pruning failed");
            }
        }
    }

    pub(super) fn schedule_next_height(&mut self, height: Height) {
        self.timers.schedule(
            Instant::now() + self.cfg.commit_delay,
            TimerEvent::StartHeight(height),
        );
    }

    /// Starts `height` if it is the next one and the pacing rules allow it.
    fn try_start_height(&mut self, height: Height, forced: bool) {
        if self.core.height() >= height || self.store.latest_height().next() != height {
            return;
        }
        if !forced && !self.has_pending_txs() {
            let since = self.last_commit_at.elapsed();
            if !self.cfg.create_empty_blocks {
                self.waiting_start = Some(height);
                return;
            }
            if since < self.cfg.empty_block_interval {
                self.waiting_start = Some(height);
                self.timers.schedule(
                    self.last_commit_at + self.cfg.empty_block_interval,
                    TimerEvent::StartHeight(height),
                );
                return;
            }
        }
        self.waiting_start = None;
        self.decided_round = None;
        self.pending.push_back(Input::StartHeight {
            height,
            last_block_time: self.last_block_time,
        });
    }

    /// A message of `height` arrived: if we wait to start it, start now, since
    /// someone else has.
    fn nudge(&mut self, height: Height) {
        if self.waiting_start == Some(height) {
            self.try_start_height(height, true);
        }
    }

    fn fire_timers(&mut self) {
        for ev in self.timers.pop_due(Instant::now()) {
            match ev {
                // The propose timeout must cover receiving and checking the
                // block. Once the block is here and being checked (or ours is
                // being built), prevoting nil before the verdict would fail the
                // round for a valid proposal that is merely large, and the next
                // round's proposal is as large: under load heights would fail
                // round after round. The timeout is held until the verdict; it
                // only serves liveness, and the check always ends (blocks are
                // bounded), so safety and liveness are unchanged.
                TimerEvent::Consensus(t)
                    if t.kind == crate::consensus::TimeoutKind::Propose
                        && self.jobs_in_flight.get(&t.height).is_some_and(|n| *n > 0) =>
                {
                    self.deferred_timeouts.push(t);
                }
                TimerEvent::Consensus(t) => self.pending.push_back(Input::Timeout(t)),
                TimerEvent::StartHeight(h) => self.try_start_height(h, false),
            }
        }
    }

    // ---- peer messages ----

    /// Adds a fault's penalty points to a peer's misbehaviour score (which
    /// decays with time); past [`BAN_SCORE`] the peer is disconnected and
    /// refused for [`BAN_TIME`]. Only the faults of [`PeerFault`], which every
    /// honest node judges alike, are penalized.
    pub(super) fn penalize(&mut self, peer: &PublicKey, fault: PeerFault) {
        let points = fault.points();
        let reason = fault.to_string();
        let reason = reason.as_str();
        self.metrics.bad_messages.inc();
        let now = Instant::now();
        let p = self.peers.entry(*peer).or_default();
        let decayed = p
            .scored_at
            .map_or(0.0, |at| (now - at).as_secs_f64() * SCORE_DECAY_PER_SEC);
        p.score = (p.score - decayed).max(0.0) + f64::from(points);
        p.scored_at = Some(now);
        let score = p.score;
        if points >= WARN_POINTS {
            warn!(peer = %peer.short(), score, reason, "bad message from peer");
        } else {
            tracing::debug!(peer = %peer.short(), score, reason, "bad message from peer");
        }
        #[cfg(feature = "faults")]
        let bans = !self.faults.never_ban;
        #[cfg(not(feature = "faults"))]
        let bans = true;
        if score >= f64::from(BAN_SCORE) && bans {
            p.score = 0.0;
            self.metrics.peers_banned.inc();
            warn!(peer = %peer, score, reason, ban_secs = BAN_TIME.as_secs(), "misbehaviour score past the threshold: banning peer");
            self.net.disconnect(peer, reason, BAN_TIME);
        }
    }

    /// Whether a message for (height, round) is beyond anything an honest
    /// sender would send now: far above both our height and the one the sender
    /// announced, or (at our height) beyond the rounds the core keeps.
    fn is_far_future(&self, peer: &PublicKey, height: Height, round: Round) -> bool {
        let ours = self.core.height();
        let (peer_h, peer_r) = self
            .peers
            .get(peer)
            .map_or((Height(0), Round(0)), |p| (p.height, p.round));
        if height.0 > ours.0.max(peer_h.0).saturating_add(FUTURE_HEIGHT_SLACK) {
            return true;
        }
        let base = if height == peer_h { peer_r } else { Round(0) };
        let base = if height == ours {
            base.max(self.core.round())
        } else {
            base
        };
        round.0 > base.0.saturating_add(crate::consensus::MAX_ROUND_LEAD)
    }

    fn on_consensus_msg(&mut self, peer: PublicKey, msg: NetMessage) {
        match msg {
            NetMessage::Vote(vote) => {
                if self.is_far_future(&peer, vote.height, vote.round) {
                    // Not a fault every node would see alike (it depends on
                    // our height): dropped, not penalized.
                    debug!(peer = %peer.short(), height = %vote.height, round = %vote.round, "vote for a far-future height or round dropped");
                    return;
                }
                let h = self.core.height();
                if vote.height != h && vote.height != h.next() {
                    return; // stale or ahead: not worth a signature check
                }
                if vote.height == h.next() && vote.round.0 >= FUTURE_HEIGHT_ROUNDS {
                    // The core keeps only the first rounds of the next height.
                    self.nudge(vote.height);
                    return;
                }
                if vote.height == h
                    && vote.round.0 > self.core.round().0.saturating_add(MAX_ROUND_LEAD)
                {
                    return; // the core would drop it; spare the check and the WAL
                }
                if self.rules.validators().get(&vote.validator).is_none() {
                    self.penalize(&peer, PeerFault::VoteFromNonValidator);
                    return;
                }
                if vote.verify(self.rules.chain_id()).is_err() {
                    self.penalize(&peer, PeerFault::BadVoteSignature);
                    return;
                }
                if vote.height == h {
                    // Logged once per validator and slot: a re-sent vote, or the
                    // thousandth conflicting one of an equivocator, does not make
                    // the WAL grow (the core keeps no more of them either).
                    let held = self
                        .core
                        .votes(vote.round, vote.vote_type)
                        .iter()
                        .any(|v| v.validator == vote.validator);
                    if !held {
                        self.wal(WalEntry::Vote(vote.clone()));
                    }
                } else {
                    self.nudge(vote.height);
                }
                self.pending.push_back(Input::Vote(vote));
            }
            NetMessage::Status(s) => self.on_status(peer, s),
            NetMessage::Evidence(list) => self.on_evidence_msg(peer, list),
            _ => self.penalize(&peer, PeerFault::WrongChannel),
        }
    }

    fn on_proposal_msg(&mut self, peer: PublicKey, msg: NetMessage) {
        let NetMessage::Proposal { proposal, block } = msg else {
            self.penalize(&peer, PeerFault::WrongChannel);
            return;
        };
        if self.is_far_future(&peer, proposal.height, proposal.round) {
            debug!(peer = %peer.short(), height = %proposal.height, round = %proposal.round, "proposal for a far-future height or round dropped");
            return;
        }
        let h = self.core.height();
        if proposal.height != h && proposal.height != h.next() {
            return;
        }
        if proposal.height == h.next() && proposal.round.0 >= FUTURE_HEIGHT_ROUNDS {
            return;
        }
        if proposal.height == h
            && proposal.round.0 > self.core.round().0.saturating_add(MAX_ROUND_LEAD)
        {
            return;
        }
        if proposal.verify(self.rules.chain_id()).is_err() {
            self.penalize(&peer, PeerFault::BadProposalSignature);
            return;
        }
        if block.id() != proposal.block_id {
            self.penalize(&peer, PeerFault::ProposalBlockMismatch);
            return;
        }
        match self.core.proposer_at(proposal.height, proposal.round) {
            Some(p) if p == proposal.proposer => {}
            Some(_) => {
                self.penalize(
                    &peer,
                    PeerFault::NotTheProposer {
                        height: proposal.height,
                    },
                );
                return;
            }
            // No height started yet: nothing to judge it by.
            None => return,
        }
        if proposal.height == h {
            // The core keeps one proposal per round: log only that one, not
            // re-sent copies or a Byzantine proposer's conflicting blocks.
            if self.core.proposal(proposal.round).is_none()
                && proposal.proposer == self.core.proposer(proposal.round)
            {
                self.wal(WalEntry::Proposal {
                    proposal: proposal.clone(),
                    block: (*block).clone(),
                });
            }
        } else {
            self.nudge(proposal.height);
        }
        self.pending.push_back(Input::Proposal { proposal, block });
    }

    fn on_peer_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Connected { peer, addr } => {
                info!(peer = %peer.short(), %addr, "peer connected");
                let p = self.peers.entry(peer).or_default();
                p.connected = true;
                p.addr = addr.to_string();
                let status = self.round_status();
                self.net.send(&peer, NetMessage::Status(status));
                self.send_evidence_to(&peer);
            }
            PeerEvent::Flooding {
                peer,
                channel,
                dropped,
            } => {
                warn!(peer = %peer.short(), %channel, dropped, "peer exceeds the message rate; excess dropped");
                self.penalize(&peer, PeerFault::Flood { channel, dropped });
                return;
            }
            PeerEvent::Disconnected { peer, reason } => {
                info!(peer = %peer.short(), %reason, "peer disconnected");
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.connected = false;
                }
            }
        }
        let n = self.peers.values().filter(|p| p.connected).count();
        self.metrics.peers.set(n as i64);
    }

    /// Publishes the status for the gRPC service.
    pub(super) fn publish_status(&mut self) {
        self.status.round = self.core.round();
        self.status.step = self.core.step().as_str();
        self.status.base_height = self.store.base_height();
        // Every peer that ever told us its height counts, connected or not: a
        // node that lost (or cut off) the peers ahead of it is still behind
        // them, and must say so rather than look in sync.
        let peer_max = self
            .peers
            .values()
            .map(|p| p.height.prev().unwrap_or(Height(0)))
            .max()
            .unwrap_or(Height(0));
        self.status.peer_max_height = peer_max;
        let behind = peer_max.0.saturating_sub(self.status.height.0);
        // One height behind is the normal state of a node that has not yet
        // heard the last precommits; one behind for seconds is not.
        self.status.catching_up =
            behind > 1 || (behind == 1 && self.last_commit_at.elapsed() > CATCHING_UP_AFTER);
        // The phase follows what the node is doing: fetching whole blocks while
        // it is more than a height behind, consensus once it is within one.
        self.status.sync_phase = if self.status.catching_up {
            SyncPhase::BlockSync
        } else {
            SyncPhase::Consensus
        };
        self.metrics.sync_phase.set(self.status.sync_phase.code());
        self.metrics.blocks_behind.set(behind as i64);
        let lag = now_ms().millis_since(self.last_block_time) as f64 / 1000.0;
        self.metrics.lag_seconds.set(lag);
        let names: HashMap<PublicKey, String> = self
            .rules
            .validators()
            .validators()
            .iter()
            .map(|v| (v.public_key, v.name.clone()))
            .collect();
        self.status.peers = self
            .peers
            .iter()
            .map(|(k, p)| super::status::PeerStatus {
                key: *k,
                name: names.get(k).cloned().unwrap_or_default(),
                address: p.addr.clone(),
                connected: p.connected,
                height: p.height,
            })
            .collect();
        self.status.peers.sort_by_key(|p| p.key);
        let _ = self.status_tx.send(self.status.clone());
    }

    /// True while the current height is decided and the next not yet started.
    pub(super) fn is_decided(&self) -> bool {
        self.core.step() == Step::Commit
    }
}
