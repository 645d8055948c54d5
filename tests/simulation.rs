//! Deterministic simulation of the consensus core.
//!
//! Each run puts n (4 to 10) copies of the real `consort::consensus::Consensus`
//! on a simulated network and clock, with crashes, partitions, message loss
//! before GST and Byzantine validators holding less than a third of the power.
//! Everything in a run is drawn from one u64 seed, so a failing run replays
//! exactly. Every run checks, over the correct nodes: agreement, validity, no
//! double signing (across crashes too), persist before send, and liveness after
//! GST and the last restart.
//!
//! ```text
//! cargo test --release --test simulation -- --nocapture                          # default seeds
//! CONSORT_SIM_SEEDS=1000 cargo test --release --test simulation -- --nocapture   # seeds 0..1000
//! CONSORT_SIM_FIRST_SEED=5000 CONSORT_SIM_SEEDS=1000 ...                         # seeds 5000..6000
//! CONSORT_SIM_SEED=42 cargo test --release --test simulation -- --nocapture      # replay seed 42
//! CONSORT_SIM_SEED=42 CONSORT_SIM_TRACE=1 ...                                    # with a trace
//! ```
//!
//! The last line printed by a batch is
//! `simulation: <n> runs, <s> safety violations, <l> liveness failures, <h> heights decided`.
//!
//! Choices worth knowing:
//! - Signatures are verified before anything reaches a core, as the runtime must.
//!   Verification is a pure function of (key, bytes, signature), so its result is
//!   cached per run: each distinct message is checked once, not once per node
//!   (about 3x faster). Messages corrupted on the wire are refused.
//! - Liveness: once GST has passed and every crashed correct node is back, each
//!   further height must be decided by every correct node within the time of
//!   `LIVENESS_ROUNDS` (8) full rounds, each waiting out its three timeouts (they
//!   grow with the round) plus three message delays and gossip periods. In
//!   practice the slowest height stays well under a fifth of that.
//! - One run in ten gives exactly a third of the power to Byzantine validators: safety
//!   must hold (two quorums of more than 2/3 share a correct validator), liveness
//!   is not owed and not checked.

mod sim;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sim::{Outcome, Sim};

/// Seeds run by a plain `cargo test`.
const DEFAULT_SEEDS: u64 = 300;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

fn run_seed(seed: u64, trace: bool) -> Outcome {
    Sim::new(seed, trace).run()
}

fn failed(o: &Outcome) -> bool {
    !o.safety.is_empty() || o.liveness.is_some()
}

fn report_failure(o: &Outcome) {
    let mut s = format!("seed {} FAILED:\n", o.seed);
    for v in &o.safety {
        s.push_str(&format!("  safety: {v}\n"));
    }
    if let Some(l) = &o.liveness {
        s.push_str(&format!("  liveness: {l}\n"));
    }
    s.push_str(&format!(
        "  replay: CONSORT_SIM_SEED={} cargo test --release --test simulation -- --nocapture\n",
        o.seed
    ));
    eprint!("{s}");
}

/// Runs seeds `first..first + count` on all cores; returns the outcomes in seed
/// order.
fn run_batch(first: u64, count: u64) -> Vec<Outcome> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(count.max(1) as usize);
    let next = AtomicU64::new(first);
    let results = Mutex::new(Vec::with_capacity(count as usize));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count {
                        break;
                    }
                    let o = run_seed(seed, false);
                    if failed(&o) {
                        report_failure(&o);
                    }
                    results.lock().unwrap().push(o);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|o| o.seed);
    results
}

fn summary(outcomes: &[Outcome]) -> (usize, usize, u64) {
    let s = outcomes.iter().filter(|o| !o.safety.is_empty()).count();
    let l = outcomes.iter().filter(|o| o.liveness.is_some()).count();
    let h = outcomes.iter().map(|o| o.heights).sum();
    (s, l, h)
}

#[test]
fn simulation() {
    let started = Instant::now();
    let outcomes = if let Some(seed) = env_u64("CONSORT_SIM_SEED") {
        let trace = std::env::var("CONSORT_SIM_TRACE").is_ok_and(|v| v != "0" && !v.is_empty());
        let sim = Sim::new(seed, trace);
        eprint!("{}", sim.scenario());
        let o = sim.run();
        eprintln!(
            "seed {seed}: {} heights decided, {} ms simulated, {:?}",
            o.heights, o.sim_ms, o.stats
        );
        if failed(&o) {
            report_failure(&o);
        }
        vec![o]
    } else {
        let count = env_u64("CONSORT_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
        let first = env_u64("CONSORT_SIM_FIRST_SEED").unwrap_or(0);
        run_batch(first, count)
    };
    let (s, l, h) = summary(&outcomes);
    let failing: Vec<u64> = outcomes
        .iter()
        .filter(|o| failed(o))
        .map(|o| o.seed)
        .collect();
    let max_gap = outcomes.iter().map(|o| o.stats.max_gap).max().unwrap_or(0);
    let max_round = outcomes
        .iter()
        .map(|o| o.stats.max_round_stable)
        .max()
        .unwrap_or(0);
    let worst = outcomes
        .iter()
        .map(|o| o.stats.max_gap * 100 / o.stats.bound.max(1))
        .max()
        .unwrap_or(0);
    let digest = outcomes
        .iter()
        .fold(0u64, |d, o| d.rotate_left(7) ^ o.digest);
    eprintln!(
        "sim stats: {:.1} s wall; after stabilization the slowest height took {max_gap} ms \
         (at worst {worst}% of its run's bound) and the highest round was {max_round}; \
         digest {digest:016x}; failing seeds: {failing:?}",
        started.elapsed().as_secs_f64()
    );
    println!(
        "simulation: {} runs, {s} safety violations, {l} liveness failures, {h} heights decided",
        outcomes.len()
    );
    assert!(
        s == 0 && l == 0,
        "{s} safety violations and {l} liveness failures; failing seeds: {failing:?}"
    );
}

/// The same seed gives the same run: same decisions, same number of events.
#[test]
fn runs_are_deterministic() {
    for seed in 0..8 {
        let a = run_seed(seed, false);
        let b = run_seed(seed, false);
        assert_eq!(a.digest, b.digest, "seed {seed}");
        assert_eq!(a.stats.events, b.stats.events, "seed {seed}");
    }
}
