//! What a run looks like, drawn from its seed before it starts: the validator set,
//! who is Byzantine and how, the network's faults, crashes, and when the network
//! stabilizes (GST).

use std::fmt;

use super::rng::Rng;

/// How a crash of a correct node lands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// At the scheduled time, between two events.
    Now,
    /// Right after the node's next `Persist` is durable, before the outputs that
    /// follow it (the broadcast it guards) are carried out.
    AfterPersist,
    /// During the node's next `Persist`: the write does not land, nothing after it
    /// is carried out.
    TornPersist,
    /// Right after the node's next decision is on its disk, before it tells
    /// anyone (the peers that missed the decision cannot learn it from this node).
    AfterDecide,
}

/// One crash of a correct node and its restart.
#[derive(Clone, Debug)]
pub struct Crash {
    /// Node index.
    pub node: usize,
    /// When it crashes (or is armed to crash at its next persist).
    pub at: u64,
    /// How long it stays down.
    pub down_for: u64,
    /// Where the crash lands.
    pub mode: CrashMode,
}

/// A partition: from `start` to `end`, messages between the two sides are lost.
#[derive(Clone, Debug)]
pub struct Partition {
    /// Start (ms).
    pub start: u64,
    /// End (ms), at most GST.
    pub end: u64,
    /// Side of each node (by node index).
    pub side: Vec<bool>,
}

/// What a Byzantine validator does. Several behaviours may combine.
#[derive(Clone, Debug, Default)]
pub struct ByzPlan {
    /// Runs as two honest copies sharing the key (Twins), each talking to its own
    /// part of the network.
    pub twin: bool,
    /// Sends nothing from this time on.
    pub silent_from: Option<u64>,
    /// Chance that a vote goes out with a conflicting twin to part of the peers.
    pub equivocate_votes: f64,
    /// Proposes two different blocks to two halves of the peers.
    pub equivocate_proposals: bool,
    /// Chance that a proposed block is invalid.
    pub invalid_proposals: f64,
    /// Chance, per message and recipient, of a small mutation (round +/- 1, an old
    /// value, nil, the other vote type) re-signed with its key (ByzzFuzz).
    pub mutate: f64,
    /// Restarts now and then without its persisted state (forgets its locks and
    /// what it signed).
    pub amnesia: bool,
}

/// Network behaviour before GST (after GST: no loss, delay at most `delay_post`).
#[derive(Clone, Debug)]
pub struct NetProfile {
    /// Chance a message is lost.
    pub drop: f64,
    /// Chance a message is delivered twice.
    pub dup: f64,
    /// Chance a message arrives with a field changed and its signature kept.
    pub corrupt: f64,
    /// Largest delay before GST (ms).
    pub delay_pre: u64,
    /// Largest delay after GST (ms): the bound Δ.
    pub delay_post: u64,
}

/// Everything drawn from the seed before the run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Key seeds, one per validator.
    pub key_seeds: Vec<[u8; 32]>,
    /// Voting power, one per validator.
    pub powers: Vec<u64>,
    /// Plan of each Byzantine validator (by validator index).
    pub byz: Vec<Option<ByzPlan>>,
    /// Global stabilization time (ms).
    pub gst: u64,
    /// Network faults before GST.
    pub net: NetProfile,
    /// Partitions (all healed by GST), by node index.
    pub partitions: Vec<Partition>,
    /// Crashes of correct nodes (all before GST).
    pub crashes: Vec<Crash>,
    /// Clock offset of each node (ms), by node index.
    pub skew: Vec<u64>,
    /// Heights every correct node must decide after the run stabilizes.
    pub target_heights: u64,
    /// Gossip period of the runtime (ms).
    pub gossip_ms: u64,
    /// Exactly a third of the power is Byzantine: only safety is checked.
    pub boundary: bool,
    /// Number of nodes: one per validator plus one per twin.
    pub nodes: usize,
    /// Validator index of each node.
    pub node_validator: Vec<usize>,
}

impl Scenario {
    /// Draws the scenario of `seed`.
    pub fn generate(seed: u64, rng: &mut Rng) -> Scenario {
        let n = rng.range(4, 10) as usize;
        let key_seeds: Vec<[u8; 32]> = (0..n).map(|_| rng.bytes32()).collect();
        let mut byz: Vec<Option<ByzPlan>> = vec![None; n];
        let boundary = rng.chance(0.1);
        let powers: Vec<u64> = if boundary {
            // Exactly a third of the power is Byzantine: safety must still hold
            // (two quorums of more than 2/3 share more than a third, so a correct
            // validator), liveness is not owed.
            let b = (n / 3).max(1);
            let mut powers: Vec<u64> = (0..b).map(|_| rng.range(1, 10)).collect();
            let correct = n - b;
            let mut rest = 2 * powers.iter().sum::<u64>();
            if rest < correct as u64 {
                powers.iter_mut().for_each(|p| *p *= correct as u64);
                rest = 2 * powers.iter().sum::<u64>();
            }
            for k in 0..correct {
                let left = (correct - k - 1) as u64;
                let p = if left == 0 {
                    rest
                } else {
                    rng.range(1, (rest - left).clamp(1, 10))
                };
                powers.push(p);
                rest -= p;
            }
            // Validator order is by key; the Byzantine ones are the first b.
            for plan in byz.iter_mut().take(b) {
                *plan = Some(ByzPlan::default());
            }
            powers
        } else if rng.chance(0.5) {
            vec![1; n]
        } else {
            (0..n).map(|_| rng.range(1, 10)).collect()
        };
        let total: u64 = powers.iter().sum();

        // Byzantine validators: strictly less than a third of the power.
        let max_byz = if boundary || rng.chance(0.2) {
            0
        } else {
            rng.range(1, n as u64)
        };
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let mut byz_power = 0;
        let mut count = 0;
        for &v in &order {
            if count >= max_byz {
                break;
            }
            if (byz_power + powers[v]) * 3 < total {
                byz_power += powers[v];
                count += 1;
                byz[v] = Some(ByzPlan::default());
            }
        }

        let gst = if rng.chance(0.1) {
            0
        } else {
            rng.range(300, 6000)
        };
        for plan in byz.iter_mut().flatten() {
            plan.twin = rng.chance(0.6);
            if !plan.twin && rng.chance(0.15) {
                plan.silent_from = Some(rng.below(gst + 2000));
            }
            if rng.chance(0.5) {
                plan.equivocate_votes = 0.7;
            }
            plan.equivocate_proposals = rng.chance(0.35);
            if rng.chance(0.3) {
                plan.invalid_proposals = 0.5;
            }
            if rng.chance(0.4) {
                plan.mutate = [0.05, 0.15, 0.3][rng.below(3) as usize];
            }
            plan.amnesia = rng.chance(0.3);
        }

        let mut node_validator: Vec<usize> = (0..n).collect();
        for (v, plan) in byz.iter().enumerate() {
            if plan.as_ref().is_some_and(|p| p.twin) {
                node_validator.push(v);
            }
        }
        let nodes = node_validator.len();

        let net = NetProfile {
            drop: [0.0, 0.05, 0.2, 0.4][rng.below(4) as usize],
            dup: [0.0, 0.02, 0.1][rng.below(3) as usize],
            corrupt: [0.0, 0.0, 0.01][rng.below(3) as usize],
            delay_pre: rng.range(5, 600),
            delay_post: rng.range(5, 50),
        };

        let mut partitions = Vec::new();
        if gst > 0 {
            // Few long partitions, or many short ones (a new one every few rounds,
            // as ByzzFuzz does).
            let (count, longest) = if rng.chance(0.5) {
                (rng.below(4), 3000)
            } else {
                (rng.range(3, 12), 800)
            };
            for _ in 0..count {
                let start = rng.below(gst);
                let end = (start + rng.range(50, longest)).min(gst);
                let side = if rng.chance(0.3) {
                    // Isolate one node.
                    let lone = rng.below(nodes as u64) as usize;
                    (0..nodes).map(|i| i == lone).collect()
                } else {
                    (0..nodes).map(|_| rng.chance(0.5)).collect()
                };
                partitions.push(Partition { start, end, side });
            }
        }

        let correct: Vec<usize> = (0..n).filter(|v| byz[*v].is_none()).collect();
        let mut crashes = Vec::new();
        if gst > 0 {
            for _ in 0..rng.below(correct.len().min(5) as u64 + 1) {
                let mode = match rng.below(4) {
                    0 => CrashMode::Now,
                    1 => CrashMode::AfterPersist,
                    2 => CrashMode::TornPersist,
                    _ => CrashMode::AfterDecide,
                };
                crashes.push(Crash {
                    node: *rng.pick(&correct),
                    at: rng.below(gst),
                    down_for: rng.range(1, 3000),
                    mode,
                });
            }
        }

        let skew = (0..nodes).map(|_| rng.below(30)).collect();
        Scenario {
            seed,
            key_seeds,
            powers,
            byz,
            gst,
            net,
            partitions,
            crashes,
            skew,
            target_heights: rng.range(10, 15),
            gossip_ms: [100, 200, 500, 1000, 2000][rng.below(5) as usize],
            boundary,
            nodes,
            node_validator,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} validators, powers {:?}, {} nodes, GST {} ms, gossip every {} ms, \
             target {} heights",
            self.seed,
            self.powers.len(),
            self.powers,
            self.nodes,
            self.gst,
            self.gossip_ms,
            self.target_heights
        )?;
        if self.boundary {
            writeln!(f, "  a third of the power is byzantine: safety only")?;
        }
        writeln!(f, "  network before GST: {:?}", self.net)?;
        for (v, p) in self.byz.iter().enumerate() {
            if let Some(p) = p {
                writeln!(f, "  byzantine v{v}: {p:?}")?;
            }
        }
        for p in &self.partitions {
            let side: Vec<usize> = (0..self.nodes).filter(|i| p.side[*i]).collect();
            writeln!(f, "  partition {}..{} ms: {side:?} | rest", p.start, p.end)?;
        }
        for c in &self.crashes {
            writeln!(
                f,
                "  crash n{} at {} ms ({:?}), down {} ms",
                c.node, c.at, c.mode, c.down_for
            )?;
        }
        Ok(())
    }
}
