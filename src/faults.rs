//! Misbehaviour for tests: a validator that breaks the rules on purpose, so that
//! tests can show the honest ones cope. It exists only in builds with the
//! `faults` cargo feature (which `cargo test` switches on for the binary the
//! integration tests start); there it is read from the `CONSORT_FAULTS`
//! environment variable (a comma-separated list), `CONSORT_SYNC_THROTTLE_MS` and
//! `CONSORT_CRASH_AT`. A build without the feature contains none of the
//! misbehaviour and says so, as an error, if its environment asks for any.

/// The environment variables that ask for misbehaviour.
const VARS: [&str; 3] = [
    "CONSORT_FAULTS",
    "CONSORT_SYNC_THROTTLE_MS",
    "CONSORT_CRASH_AT",
];

/// Logs an error for each variable of [`VARS`] that is set although this build
/// has no misbehaviour to switch on: a test or an operator expecting it must not
/// be left to believe it happened.
#[cfg(not(feature = "faults"))]
pub fn report_unavailable() {
    for var in VARS {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            tracing::error!(
                var,
                "test misbehaviour asked for, but this binary was built without the `faults` feature: ignored"
            );
        }
    }
}

/// Misbehaviours switched on.
#[cfg(feature = "faults")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Our proposals carry a transaction that is not valid.
    pub propose_invalid_tx: bool,
    /// The sync service serves snapshot chunks with a flipped byte.
    pub serve_corrupt_chunks: bool,
    /// The sync service serves light blocks with a forged state root.
    pub serve_forged_light_blocks: bool,
    /// State sync waits this long after each chunk (to be killed mid-restore),
    /// and block sync after each block it applies (to stay behind).
    pub sync_throttle_ms: u64,
    /// Every vote we sign goes out with a conflicting twin (same height, round
    /// and type, another block id), signed past the signing-state guard.
    pub equivocate_votes: bool,
    /// Our proposal goes to half of the peers, a conflicting one (another
    /// block) to the other half.
    pub equivocate_proposals: bool,
    /// Our proposals reach no peer, and block requests get no answer.
    pub withhold_blocks: bool,
    /// Every gossip tick, a burst of signed votes for far-future heights and
    /// rounds to every peer.
    pub flood_votes: bool,
    /// Every gossip tick, valid-looking garbage to every peer: votes with bad
    /// signatures and frames that do not decode.
    pub garbage_frames: bool,
    /// Every gossip tick, a frame of transactions that do not decode to every
    /// peer.
    pub flood_txs: bool,
    /// The honest side of a flood measurement: misbehaving peers are scored
    /// but never banned, so that a flood lasts.
    pub never_ban: bool,
}

#[cfg(feature = "faults")]
impl Faults {
    /// Whether a misbehaviour needs the validator key outside the core (to sign
    /// what the core's signing-state guard would refuse).
    pub fn signs_outside_the_core(&self) -> bool {
        self.equivocate_votes || self.equivocate_proposals || self.flood_votes
    }

    /// Reads `CONSORT_FAULTS` and `CONSORT_SYNC_THROTTLE_MS`.
    pub fn from_env() -> Faults {
        let list = std::env::var(VARS[0]).unwrap_or_default();
        let mut f = Faults::default();
        for item in list.split(',').map(str::trim) {
            match item {
                "propose-invalid-tx" => f.propose_invalid_tx = true,
                "serve-corrupt-chunks" => f.serve_corrupt_chunks = true,
                "serve-forged-light-blocks" => f.serve_forged_light_blocks = true,
                "equivocate-votes" => f.equivocate_votes = true,
                "equivocate-proposals" => f.equivocate_proposals = true,
                "withhold-blocks" => f.withhold_blocks = true,
                "flood-votes" => f.flood_votes = true,
                "garbage-frames" => f.garbage_frames = true,
                "flood-txs" => f.flood_txs = true,
                "never-ban" => f.never_ban = true,
                "" => {}
                other => tracing::warn!(fault = other, "unknown fault ignored"),
            }
        }
        if let Some(ms) = std::env::var(VARS[1]).ok().and_then(|v| v.parse().ok()) {
            f.sync_throttle_ms = ms;
        }
        if f != Faults::default() {
            tracing::warn!(faults = ?f, "TEST MISBEHAVIOUR SWITCHED ON");
        }
        f
    }
}

/// Aborts the process at the named point if `CONSORT_CRASH_AT` names it: a
/// crash between two writes, at the exact place a test needs it, for the
/// recovery tests.
#[cfg(feature = "faults")]
pub fn crash_point(point: &str) {
    if std::env::var(VARS[2]).is_ok_and(|v| v == point) {
        tracing::warn!(point, "TEST CRASH POINT REACHED: aborting");
        std::process::abort();
    }
}
