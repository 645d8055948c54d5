//! Misbehaviour for tests: a validator that breaks the rules on purpose, so that
//! tests can show the honest ones cope. Only debug builds read it (from the
//! `CONSORT_FAULTS` environment variable, a comma-separated list); a release
//! build never misbehaves, whatever its environment.

/// Misbehaviours switched on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Our proposals carry a transaction that is not valid.
    pub propose_invalid_tx: bool,
    /// The sync service serves snapshot chunks with a flipped byte.
    pub serve_corrupt_chunks: bool,
    /// The sync service serves light blocks with a forged state root.
    pub serve_forged_light_blocks: bool,
    /// State sync waits this long after each chunk (to be killed mid-restore).
    pub sync_throttle_ms: u64,
}

impl Faults {
    /// Reads `CONSORT_FAULTS` in debug builds; nothing in release builds.
    pub fn from_env() -> Faults {
        if !cfg!(debug_assertions) {
            return Faults::default();
        }
        let list = std::env::var("CONSORT_FAULTS").unwrap_or_default();
        let mut f = Faults::default();
        for item in list.split(',').map(str::trim) {
            match item {
                "propose-invalid-tx" => f.propose_invalid_tx = true,
                "serve-corrupt-chunks" => f.serve_corrupt_chunks = true,
                "serve-forged-light-blocks" => f.serve_forged_light_blocks = true,
                "" => {}
                other => tracing::warn!(fault = other, "unknown fault ignored"),
            }
        }
        if let Some(ms) = std::env::var("CONSORT_SYNC_THROTTLE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            f.sync_throttle_ms = ms;
        }
        if f != Faults::default() {
            tracing::warn!(faults = ?f, "TEST MISBEHAVIOUR SWITCHED ON");
        }
        f
    }
}
